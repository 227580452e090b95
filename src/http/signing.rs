//! Signed image URLs: `?exp=UNIX_SECONDS&sig=HEX`, where `sig` is the lowercase hex
//! HMAC-SHA256 of `{path}?exp={exp}` (the path as sent, percent-encoded) under a key
//! every replica shares (a file).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// The key file made in the data dir when none is configured.
pub const DEFAULT_KEY_FILE: &str = "http-url-key";

/// Why a signed URL is refused (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unsigned,
    BadSignature,
    Expired,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Unsigned => "this URL needs exp and sig parameters",
            Refused::BadSignature => "the URL's signature does not match",
            Refused::Expired => "the URL has expired",
        }
    }
}

pub struct UrlSigner {
    key: Vec<u8>,
    /// How long a URL handed out stays valid, at least.
    ttl: Duration,
}

impl UrlSigner {
    /// The signer with the key in `key_file`, or in the data dir's key file (created
    /// with 32 random bytes, hex, mode 0600, when missing). The key is the file's bytes,
    /// exactly. Blocking.
    pub fn load(key_file: Option<&Path>, data_dir: &Path, ttl: Duration) -> Result<UrlSigner> {
        let key = match key_file {
            Some(path) => read_key(path)?,
            None => read_or_create_key(&data_dir.join(DEFAULT_KEY_FILE))?,
        };
        Ok(UrlSigner { key, ttl })
    }

    /// A signer with this key (tests, benchmarks).
    pub fn with_key(key: Vec<u8>, ttl: Duration) -> UrlSigner {
        UrlSigner { key, ttl }
    }

    /// The lowercase hex signature of `path` expiring at `exp`.
    pub fn signature(&self, path: &str, exp: u64) -> String {
        let mut mac = self.mac();
        mac.update(signed_text(path, exp).as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The query a URL of `path` handed out now carries. Its expiry is rounded up to a
    /// multiple of the TTL (so it lies one to two TTLs ahead): the same image gets the
    /// same URL for a TTL, and browsers keep their cached copy meanwhile.
    pub fn query(&self, path: &str, now: SystemTime) -> String {
        let ttl = self.ttl.as_secs().max(1);
        let exp = (unix_seconds(now) / ttl + 2) * ttl;
        format!("exp={exp}&sig={}", self.signature(path, exp))
    }

    /// Checks a request's `exp` and `sig` against its path, at `now`.
    pub fn verify(
        &self,
        path: &str,
        exp: Option<&str>,
        sig: Option<&str>,
        now: SystemTime,
    ) -> std::result::Result<(), Refused> {
        let (Some(exp_text), Some(sig)) = (exp, sig) else {
            return Err(Refused::Unsigned);
        };
        let exp: u64 = exp_text.parse().map_err(|_| Refused::BadSignature)?;
        let sig = unhex(sig).ok_or(Refused::BadSignature)?;
        let mut mac = self.mac();
        mac.update(signed_text(path, exp).as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&sig).map_err(|_| Refused::BadSignature)?;
        if exp < unix_seconds(now) {
            return Err(Refused::Expired);
        }
        Ok(())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length.
        HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }
}

fn signed_text(path: &str, exp: u64) -> String {
    format!("{path}?exp={exp}")
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn read_key(path: &Path) -> Result<Vec<u8>> {
    let key = std::fs::read(path)
        .map_err(|e| Error::storage_io(&e, &format!("read the URL key file {}", path.display())))?;
    if key.is_empty() {
        return Err(Error::internal(format!(
            "the URL key file {} is empty",
            path.display()
        )));
    }
    Ok(key)
}

fn read_or_create_key(path: &PathBuf) -> Result<Vec<u8>> {
    if path.exists() {
        return read_key(path);
    }
    let mut random = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut random))
        .map_err(|e| Error::internal(format!("reading /dev/urandom: {e}")))?;
    let key = hex(&random);
    // With shared backends (replicas) nothing else creates the data dir.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::storage_io(&e, "create data dir"))?;
    }
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    }
    .map_err(|e| Error::storage_io(&e, "create the URL key file"))?;
    file.write_all(key.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::storage_io(&e, "write the URL key file"))?;
    tracing::info!(path = %path.display(), "created a key for signed image URLs");
    Ok(key.into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::with_key(b"secret".to_vec(), Duration::from_secs(3600))
    }

    #[test]
    fn signature_is_lowercase_hex_hmac_sha256_of_path_and_exp() {
        // Python: hmac.new(b"secret", b"/v1/images/default/alice/256.jpg?exp=2000000000",
        //                  hashlib.sha256).hexdigest()
        assert_eq!(
            signer().signature("/v1/images/default/alice/256.jpg", 2_000_000_000),
            "ecf6d01294a8941a53b969f0ea585c356eff1230e57ccb951a7d5fd8b7833fd1"
        );
    }

    #[test]
    fn a_handed_out_query_verifies_until_it_expires() {
        let signer = signer();
        let path = "/v1/images/default/alice/3/256.jpg";
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let query = signer.query(path, now);
        let (exp, sig) = query
            .strip_prefix("exp=")
            .and_then(|q| q.split_once("&sig="))
            .unwrap();
        assert_eq!(signer.verify(path, Some(exp), Some(sig), now), Ok(()));
        assert_eq!(
            signer.verify(
                "/v1/images/default/bob/3/256.jpg",
                Some(exp),
                Some(sig),
                now
            ),
            Err(Refused::BadSignature)
        );
        let later = UNIX_EPOCH + Duration::from_secs(exp.parse::<u64>().unwrap() + 1);
        assert_eq!(
            signer.verify(path, Some(exp), Some(sig), later),
            Err(Refused::Expired)
        );
        assert_eq!(signer.verify(path, None, None, now), Err(Refused::Unsigned));
    }
}
