//! Reading `HKLM\SOFTWARE\Policies\Link Peeler`: only the registry access
//! lives here (through Microsoft's `windows-registry` crate, so there is no
//! `unsafe` of ours); what the values mean is
//! [`from_keyed`](super::from_keyed)'s job (tested on every OS).
use std::collections::BTreeMap;

use windows_registry::{LOCAL_MACHINE, Type};

use super::source::Value;

/// `KEY_WOW64_64KEY`: the 64-bit view of the registry even from a 32-bit
/// process (the crate exports no access-right constants).
const KEY_WOW64_64KEY: u32 = 0x0100;
/// `ERROR_FILE_NOT_FOUND`: the key does not exist.
const ERROR_FILE_NOT_FOUND: u32 = 2;

/// A `windows-registry` result with its error as the Win32 error code
/// (the crate carries it as an HRESULT, `HRESULT_FROM_WIN32`), so messages
/// keep naming the code.
fn win32<T>(result: windows_registry::Result<T>) -> Result<T, u32> {
    result.map_err(|e| {
        let hresult = e.code().0.cast_unsigned();
        if hresult & 0xFFFF_0000 == 0x8007_0000 {
            hresult & 0xFFFF
        } else {
            hresult
        }
    })
}

fn text(units: &[u16]) -> String {
    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
    String::from_utf16_lossy(units.get(..end).unwrap_or(units))
}

/// The first `N` bytes of `bytes`, if it has that many.
fn prefix<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    bytes.get(..N).and_then(|b| <[u8; N]>::try_from(b).ok())
}

const UNSUPPORTED: Value = Value::Other("an unsupported registry type");

/// One registry value as a [`Value`]: strings (`REG_EXPAND_SZ` unexpanded),
/// `REG_DWORD`/`REG_QWORD` integers and `REG_MULTI_SZ` lists; anything else
/// (binary, a short integer) is a type error for a known key.
fn value(v: &windows_registry::Value) -> Value {
    match v.ty() {
        Type::String | Type::ExpandString => Value::Str(text(v.as_wide())),
        Type::U32 => match prefix::<4>(v) {
            Some(b) => Value::Int(i64::from(u32::from_le_bytes(b))),
            None => UNSUPPORTED,
        },
        Type::U64 => match prefix::<8>(v) {
            Some(b) => Value::Int(i64::from_le_bytes(b)),
            None => UNSUPPORTED,
        },
        Type::MultiString => Value::List(
            v.as_wide()
                .split(|&u| u == 0)
                .filter(|s| !s.is_empty())
                .map(String::from_utf16_lossy)
                .collect(),
        ),
        _ => UNSUPPORTED,
    }
}

/// All values of `HKLM\key` (64-bit view); a missing key is an empty map.
pub fn read(key: &str) -> Result<BTreeMap<String, Value>, String> {
    let opened = LOCAL_MACHINE
        .options()
        .read()
        .access(KEY_WOW64_64KEY)
        .open(key);
    let hkey = match win32(opened) {
        Ok(k) => k,
        Err(ERROR_FILE_NOT_FOUND) => return Ok(BTreeMap::new()),
        Err(rc) => return Err(format!("cannot open the registry key (error {rc})")),
    };
    let values =
        win32(hkey.values()).map_err(|rc| format!("cannot read the registry key (error {rc})"))?;
    Ok(values.map(|(name, v)| (name, value(&v))).collect())
}
