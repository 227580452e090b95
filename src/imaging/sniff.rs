use crate::imaging::SourceFormat;

/// Identifies the container purely from its leading bytes; the declared
/// content type of an upload is attacker-controlled and never consulted.
pub fn sniff(bytes: &[u8]) -> Option<SourceFormat> {
    // A JPEG starts with SOI followed by the first marker's 0xFF; requiring
    // the third byte rules out random data that merely begins with FF D8.
    if bytes.len() >= 3 && bytes[..3] == [0xFF, 0xD8, 0xFF] {
        return Some(SourceFormat::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(SourceFormat::Png);
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some(SourceFormat::Gif);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some(SourceFormat::Webp);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_supported_magic() {
        assert_eq!(
            sniff(b"\xFF\xD8\xFF\xE0\x00\x10JFIF"),
            Some(SourceFormat::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(SourceFormat::Png)
        );
        assert_eq!(sniff(b"GIF89a\x01\x00\x01\x00"), Some(SourceFormat::Gif));
        assert_eq!(sniff(b"GIF87a\x01\x00\x01\x00"), Some(SourceFormat::Gif));
        assert_eq!(
            sniff(b"RIFF\x24\x00\x00\x00WEBPVP8 "),
            Some(SourceFormat::Webp)
        );
    }

    #[test]
    fn rejects_everything_else() {
        let heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic";
        let svg = b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>";
        let html = b"<!DOCTYPE html><html><body><img src=x></body></html>";
        let tiff_le = b"II*\x00\x08\x00\x00\x00";
        let tiff_be = b"MM\x00*\x00\x00\x00\x08";
        let bmp = b"BM\x36\x00\x0c\x00\x00\x00\x00\x00\x36\x00\x00\x00";
        let riff_wav = b"RIFF\x24\x00\x00\x00WAVEfmt ";
        let random: Vec<u8> = (0u32..512)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for bytes in [
            &heic[..],
            &svg[..],
            &html[..],
            &tiff_le[..],
            &tiff_be[..],
            &bmp[..],
            &riff_wav[..],
            &random[..],
            b"",
            b"\xFF\xD8",
        ] {
            assert_eq!(sniff(bytes), None, "{:?}", &bytes[..bytes.len().min(8)]);
        }
    }
}
