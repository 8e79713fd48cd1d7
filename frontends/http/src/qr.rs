//! QR code images (PNG) for TOTP enrolment: black modules on white, 4 pixels a
//! module, the standard 4-module quiet zone.

const SCALE: usize = 4;
const BORDER: i32 = 4;

/// A PNG of the QR code of `text`, or `None` when the text is too long for one.
pub(crate) fn png(text: &str) -> Option<Vec<u8>> {
    let code = qrcodegen::QrCode::encode_text(text, qrcodegen::QrCodeEcc::Medium).ok()?;
    let modules = code.size() + 2 * BORDER;
    let side = usize::try_from(modules).ok()? * SCALE;
    let mut pixels = Vec::with_capacity(side * side);
    for y in 0..side {
        for x in 0..side {
            let module_x = i32::try_from(x / SCALE).ok()? - BORDER;
            let module_y = i32::try_from(y / SCALE).ok()? - BORDER;
            pixels.push(if code.get_module(module_x, module_y) {
                0
            } else {
                255
            });
        }
    }
    let mut out = Vec::new();
    let side = u32::try_from(side).ok()?;
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().ok()?;
    writer.write_image_data(&pixels).ok()?;
    writer.finish().ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_png_with_the_signature_and_a_plausible_size() {
        let image = super::png("otpauth://totp/Portcullis:alice?secret=JBSWY3DPEHPK3PXP").unwrap();
        assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n");
        // IHDR width: (modules + 8) * 4, and modules is 21 + 4k.
        let width = u32::from_be_bytes(image[16..20].try_into().unwrap());
        assert_eq!(width % 4, 0);
        assert_eq!((width / 4 - 8 - 21) % 4, 0);
        assert!(super::png(&"x".repeat(5000)).is_none());
    }
}
