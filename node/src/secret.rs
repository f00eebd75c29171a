//! The network secret: who may join the overlay, and which release they run.
//!
//! Every connection between nodes starts with a libp2p pnet handshake keyed by a pre-shared
//! key. That key is derived (HKDF-SHA256) from the secret *and* the protocol version, so a
//! node without the secret, or running an incompatible release, cannot complete a
//! connection: changing either one partitions the network cleanly. Rolling out an
//! incompatible release is therefore "ship the new version" or "hand out a new secret".
//!
//! A secret file is one line: `reef-secret-1 <64 hex digits>`. Like an ssh key, it must not be
//! readable by group or others; [`NetworkSecret::load`] refuses it otherwise.

use std::fmt;
use std::io::Write;
use std::path::Path;

use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// The wire protocol's version. Nodes of different versions derive different keys and never
/// connect; bump it with any incompatible change to the overlay's transport or messages (with
/// `dht::wire::PROTOCOL_VERSION` for the DHT's). 3: the key layer's cipher is AES-256-CTR.
pub const PROTOCOL_VERSION: &str = "reef/3";

/// The first word of a secret file.
const FILE_TAG: &str = "reef-secret-1";

/// Why a secret could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is readable by group or others.
    #[error(
        "{path}: mode {mode:o} lets other users read the network secret; run `chmod 600 {path}`"
    )]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not `reef-secret-1 <64 hex digits>`.
    #[error("{path}: not a reef secret file (expected `{FILE_TAG} <64 hex digits>`)")]
    Malformed {
        /// The file.
        path: String,
    },
    /// The system's random number generator failed.
    #[error("no entropy source for a new secret")]
    NoEntropy,
}

/// A 256-bit network secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkSecret([u8; 32]);

impl fmt::Debug for NetworkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkSecret(..)") // never in logs
    }
}

/// How HKDF output becomes the pnet key (ring wants the length as a type).
struct KeyLen;

impl hkdf::KeyType for KeyLen {
    fn len(&self) -> usize {
        32
    }
}

/// Writes `bytes` to a new file only its owner can read (never over an existing one).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The file's mode if others than its owner may read or write it (`None`: private).
pub fn open_mode(path: &Path) -> std::io::Result<Option<u32>> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Ok(Some(mode));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    Ok(None)
}

impl NetworkSecret {
    /// The built-in development secret. Everyone has it, so it protects nothing: a node using
    /// it binds the overlay to loopback only.
    pub fn development() -> NetworkSecret {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            b"reef development secret: public, loopback only",
        );
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        NetworkSecret(key)
    }

    /// A fresh random secret.
    pub fn generate() -> Result<NetworkSecret, SecretError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SecretError::NoEntropy)?;
        Ok(NetworkSecret(key))
    }

    /// The secret from its text form.
    pub fn parse(text: &str) -> Option<NetworkSecret> {
        let mut words = text.split_whitespace();
        if words.next() != Some(FILE_TAG) {
            return None;
        }
        let key = crate::hex::decode(words.next()?)?;
        if words.next().is_some() {
            return None;
        }
        Some(NetworkSecret(key))
    }

    /// The text form written to secret files.
    pub fn to_text(&self) -> String {
        format!("{FILE_TAG} {}\n", crate::hex::encode(&self.0))
    }

    /// Reads a secret file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<NetworkSecret, SecretError> {
        let shown = path.display().to_string();
        let io = |source| SecretError::Io {
            path: shown.clone(),
            source,
        };
        if let Some(mode) = open_mode(path).map_err(io)? {
            return Err(SecretError::TooOpen { path: shown, mode });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        NetworkSecret::parse(&text).ok_or(SecretError::Malformed { path: shown })
    }

    /// Writes the secret to a new file with mode 0600 (never over an existing one).
    pub fn save_new(&self, path: &Path) -> Result<(), SecretError> {
        let io = |source| SecretError::Io {
            path: path.display().to_string(),
            source,
        };
        write_private(path, self.to_text().as_bytes()).map_err(io)
    }

    /// The pnet pre-shared key for `protocol_version`: HKDF-SHA256 with the secret as input
    /// keying material and the version as context, so each (secret, version) pair keys its
    /// own network.
    pub fn psk(&self, protocol_version: &str) -> [u8; 32] {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"reef pnet pre-shared key");
        let prk = salt.extract(&self.0);
        let info = [protocol_version.as_bytes()];
        let mut key = [0u8; 32];
        // Expanding 32 bytes from SHA-256 cannot exceed HKDF's limit (255 blocks); the
        // fallback (an all-zero key) is unreachable and would still only isolate this node.
        if let Ok(okm) = prk.expand(&info, KeyLen) {
            let _ = okm.fill(&mut key);
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_garbage_is_refused() {
        let s = NetworkSecret::generate().expect("entropy");
        assert_eq!(NetworkSecret::parse(&s.to_text()), Some(s));
        for bad in [
            "",
            "reef-secret-1",
            "reef-secret-2 00",
            "reef-secret-1 zz",
            &format!("reef-secret-1 {}", "0".repeat(63)),
            &format!("reef-secret-1 {} extra", "0".repeat(64)),
            &format!("reef-secret-1 {}é", "0".repeat(62)),
        ] {
            assert_eq!(NetworkSecret::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_key_depends_on_secret_and_version() {
        let a = NetworkSecret::generate().expect("entropy");
        let b = NetworkSecret::generate().expect("entropy");
        assert_eq!(a.psk(PROTOCOL_VERSION), a.psk(PROTOCOL_VERSION));
        assert_ne!(a.psk(PROTOCOL_VERSION), b.psk(PROTOCOL_VERSION));
        assert_ne!(a.psk("reef/1"), a.psk("reef/2"));
        assert_ne!(a.psk(PROTOCOL_VERSION), [0u8; 32]);
    }

    #[cfg(unix)]
    #[test]
    fn files_are_private_and_open_ones_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("reef-secret-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("secret");
        let s = NetworkSecret::generate().expect("entropy");
        s.save_new(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(NetworkSecret::load(&path).expect("load"), s);
        assert!(s.save_new(&path).is_err(), "never overwrites a secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            NetworkSecret::load(&path),
            Err(SecretError::TooOpen { mode: 0o644, .. })
        ));
        std::fs::write(dir.join("bad"), "hello").expect("write");
        std::fs::set_permissions(dir.join("bad"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert!(matches!(
            NetworkSecret::load(&dir.join("bad")),
            Err(SecretError::Malformed { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
