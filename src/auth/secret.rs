//! The HS256 secret: read from the configured file, or (zero set-up) created in the data
//! dir on first start, readable by its owner only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The secret's file name in the data dir.
pub const SECRET_FILE: &str = "jwt-hs256.secret";
/// Random bytes in a created secret (written as hex).
const SECRET_BYTES: usize = 32;

/// Where the data dir's secret lives.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join(SECRET_FILE)
}

/// A secret file's bytes, one trailing newline stripped.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "cannot read the HS256 secret {}: {e}",
            path.display()
        ))
    })?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(Error::Config(format!(
            "the HS256 secret {} is empty",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The data dir's secret, created (mode 0600) if it is not there yet.
pub fn read_or_create(data_dir: &Path) -> Result<Vec<u8>> {
    let path = path_in(data_dir);
    if !path.exists() {
        create(&path)?;
    }
    read(&path)
}

fn create(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::storage_io(&e, "create data dir"))?;
    }
    let mut random = [0u8; SECRET_BYTES];
    getrandom::fill(&mut random).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    let mut file = match file {
        Ok(file) => file,
        // Another process (`profile-image token`, a second server) made it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::storage_io(&e, "create the HS256 secret")),
    };
    writeln!(file, "{hex}")
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::storage_io(&e, "write the HS256 secret"))?;
    tracing::info!(
        path = %path.display(),
        "created an HS256 secret for tokens (no key was configured); \
         `profile-image token --user U` signs tokens with it"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_created_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = read_or_create(dir.path()).unwrap();
        assert_eq!(first.len(), 2 * SECRET_BYTES);
        let mode = std::fs::metadata(path_in(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            read_or_create(dir.path()).unwrap(),
            first,
            "read, not made again"
        );
    }

    #[test]
    fn a_trailing_newline_is_not_part_of_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read(&file).unwrap(), b"s3cret");
        std::fs::write(&file, "s3cret\r\n").unwrap();
        assert_eq!(read(&file).unwrap(), b"s3cret");
        std::fs::write(&file, "s3cret\n\n").unwrap();
        assert_eq!(
            read(&file).unwrap(),
            b"s3cret\n",
            "only one newline is stripped"
        );
    }
}
