//! Reading `HKLM\SOFTWARE\Policies\Link Peeler`: only the Win32 calls live
//! here; what the values mean is [`from_keyed`](super::from_keyed)'s job (tested on every OS).
use std::collections::BTreeMap;

use windows_sys::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_NO_MORE_ITEMS};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY, REG_DWORD, REG_EXPAND_SZ, REG_MULTI_SZ,
    REG_QWORD, REG_SZ, RegCloseKey, RegEnumValueW, RegOpenKeyExW,
};

use super::source::Value;

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn text(units: &[u16]) -> String {
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(&units[..end])
}

/// All values of `HKLM\key` (64-bit view); a missing key is an empty map.
pub fn read(key: &str) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    let mut hkey: HKEY = std::ptr::null_mut();
    let name = wide(key);
    // SAFETY: valid NUL-terminated name and out-pointer.
    let rc = unsafe {
        RegOpenKeyExW(
            HKEY_LOCAL_MACHINE,
            name.as_ptr(),
            0,
            KEY_READ | KEY_WOW64_64KEY,
            &mut hkey,
        )
    };
    if rc == ERROR_FILE_NOT_FOUND {
        return Ok(out);
    }
    if rc != 0 {
        return Err(format!("cannot open the registry key (error {rc})"));
    }
    let mut index = 0u32;
    let result = loop {
        let mut name_buf = vec![0u16; 16_384];
        let mut name_len = name_buf.len() as u32;
        let mut data = vec![0u8; 64 * 1024];
        let mut data_len = data.len() as u32;
        let mut kind = 0u32;
        // SAFETY: buffers and lengths match; hkey is open.
        let rc = unsafe {
            RegEnumValueW(
                hkey,
                index,
                name_buf.as_mut_ptr(),
                &mut name_len,
                std::ptr::null(),
                &mut kind,
                data.as_mut_ptr(),
                &mut data_len,
            )
        };
        if rc == ERROR_NO_MORE_ITEMS {
            break Ok(());
        }
        if rc != 0 {
            break Err(format!("cannot read the registry key (error {rc})"));
        }
        index += 1;
        let vname = text(&name_buf[..name_len as usize]);
        let bytes = &data[..data_len as usize];
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let value = match kind {
            REG_SZ | REG_EXPAND_SZ => Value::Str(text(&units)),
            REG_DWORD if bytes.len() >= 4 => Value::Int(i64::from(u32::from_le_bytes([
                bytes[0], bytes[1], bytes[2], bytes[3],
            ]))),
            REG_QWORD if bytes.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[..8]);
                Value::Int(i64::from_le_bytes(b))
            }
            REG_MULTI_SZ => Value::List(
                units
                    .split(|&u| u == 0)
                    .filter(|s| !s.is_empty())
                    .map(String::from_utf16_lossy)
                    .collect(),
            ),
            _ => Value::Other("an unsupported registry type"),
        };
        out.insert(vname, value);
    };
    // SAFETY: hkey was opened above.
    unsafe { RegCloseKey(hkey) };
    result.map(|()| out)
}
