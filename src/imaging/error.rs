use thiserror::Error;

/// Everything that can go wrong while turning uploaded bytes into renditions.
///
/// Messages are meant to be shown to the uploader, so they describe the
/// problem with the upload and never leak decoder internals.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImagingError {
    #[error("unsupported or corrupt image: {0}")]
    InvalidFormat(String),
    #[error("image too large: {0}")]
    TooLarge(String),
    #[error("crop must be a non-empty square inside the {width}x{height} image")]
    CropOutOfBounds { width: u32, height: u32 },
    #[error("could not encode the image: {0}")]
    Encode(String),
}

impl ImagingError {
    pub(crate) fn corrupt() -> Self {
        ImagingError::InvalidFormat("the image data is corrupt or truncated".to_owned())
    }

    /// Decoder errors are folded into two user-facing buckets: the only
    /// distinction a client can act on is "too big" versus "broken".
    pub(crate) fn from_image(err: image::ImageError) -> Self {
        match err {
            image::ImageError::Limits(_) => {
                ImagingError::TooLarge("decoding would need too much memory".to_owned())
            }
            _ => Self::corrupt(),
        }
    }
}
