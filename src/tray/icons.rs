//! The tray's icons, embedded in the binary.
//!
//! The PNGs are rendered once from the hand-written SVGs by
//! `assets/render.sh` and committed; the build only embeds them, so building
//! needs no SVG tooling. 32 px is what Windows and Linux panels ask for at
//! 100–200 % scale; macOS menu bars get 64 px (the 22 pt bar on a Retina
//! screen), scaled down by AppKit.

use super::view::IconKind;

macro_rules! png {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/icons/png/",
            $name,
            "-",
            icon_px!(),
            ".png"
        ))
    };
}

#[cfg(not(target_os = "macos"))]
macro_rules! icon_px {
    () => {
        "32"
    };
}

#[cfg(target_os = "macos")]
macro_rules! icon_px {
    () => {
        "64"
    };
}

/// The embedded PNG for `kind`.
pub fn png(kind: IconKind) -> &'static [u8] {
    match kind {
        IconKind::Working => png!("working"),
        IconKind::Idle => png!("idle"),
        IconKind::Paused => png!("paused"),
        IconKind::Offline => png!("offline"),
        IconKind::Attention => png!("attention"),
    }
}

/// Decoded straight RGBA pixels (what the tray APIs take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Decodes one embedded icon to 8-bit RGBA.
pub fn rgba(kind: IconKind) -> Result<Rgba, png::DecodingError> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png(kind)));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::ALPHA);
    let mut reader = decoder.read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut pixels)?;
    pixels.truncate(info.buffer_size());
    if info.color_type != png::ColorType::Rgba || info.bit_depth != png::BitDepth::Eight {
        return Err(png::DecodingError::LimitsExceeded);
    }
    Ok(Rgba {
        pixels,
        width: info.width,
        height: info.height,
    })
}

/// The tray-icon image for `kind`.
pub fn icon(kind: IconKind) -> Option<tray_icon::Icon> {
    let img = rgba(kind)
        .inspect_err(|e| tracing::error!(?kind, error = %e, "cannot decode an embedded icon"))
        .ok()?;
    tray_icon::Icon::from_rgba(img.pixels, img.width, img.height)
        .inspect_err(|e| tracing::error!(?kind, error = %e, "icon rejected"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [IconKind; 5] = [
        IconKind::Working,
        IconKind::Idle,
        IconKind::Paused,
        IconKind::Offline,
        IconKind::Attention,
    ];

    #[test]
    fn every_state_has_a_distinct_square_rgba_icon() {
        let imgs: Vec<Rgba> = ALL.iter().map(|k| rgba(*k).unwrap()).collect();
        for (i, img) in imgs.iter().enumerate() {
            assert_eq!(img.width, img.height);
            assert!(img.width >= 32);
            assert_eq!(img.pixels.len(), (img.width * img.height * 4) as usize);
            // A disc: transparent corners, opaque centre.
            assert_eq!(img.pixels[3], 0, "top-left corner is transparent");
            let c = ((img.height / 2 * img.width + img.width / 2) * 4) as usize;
            assert_eq!(img.pixels[c + 3], 255, "centre is opaque");
            for other in &imgs[i + 1..] {
                assert_ne!(img.pixels, other.pixels);
            }
            assert!(icon(ALL[i]).is_some());
        }
    }
}
