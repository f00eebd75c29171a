//! The data directory: what a node keeps across restarts so it comes back as itself and
//! rejoins without a bootstrap address ("fail same").
//!
//! - `identity.key`: the libp2p key pair (protobuf encoding, mode 0600). The peer ID, and
//!   so the DHT node ID, follow from it: peers that knew the node still know it.
//! - `peers.json`: the level-0 peers last known, as multiaddrs with `/p2p/<peer id>`;
//!   written every minute and at shutdown, read at start when no `--bootstrap` is given.

use std::io::Write;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use libp2p::identity::Keypair;

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The identity file is not a key pair.
    #[error("{0}: not a libp2p key pair (move it away to make a new identity)")]
    BadIdentity(String),
}

/// A node's data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Most peers remembered.
const MAX_PEERS: usize = 64;

impl DataDir {
    /// Opens (creating it, mode 0700) the directory at `root`.
    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        std::fs::create_dir_all(root).map_err(io_err(root))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(root))?;
        }
        Ok(DataDir {
            root: root.to_path_buf(),
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The node's identity: read, or made and saved on first start.
    pub fn identity(&self) -> Result<Keypair, DataDirError> {
        let path = self.root.join("identity.key");
        match std::fs::read(&path) {
            Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
                .map_err(|_| DataDirError::BadIdentity(path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Keypair::generate_ed25519();
                let bytes = key
                    .to_protobuf_encoding()
                    .map_err(|_| DataDirError::BadIdentity(path.display().to_string()))?;
                write_private(&path, &bytes)?;
                Ok(key)
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// The peers saved last time (none if there is no file or it is unreadable).
    pub fn peers(&self) -> Vec<Multiaddr> {
        let path = self.root.join("peers.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Vec::new();
        };
        match serde_json::from_str::<Vec<String>>(&text) {
            Ok(list) => list
                .iter()
                .filter_map(|a| a.parse().ok())
                .take(MAX_PEERS)
                .collect(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable peers file");
                Vec::new()
            }
        }
    }

    /// Saves `peers` (atomically: a crash leaves the old list or the new one).
    pub fn save_peers(&self, peers: &[Multiaddr]) -> Result<(), DataDirError> {
        if peers.is_empty() {
            return Ok(()); // keep the last good list rather than forget everyone
        }
        let list: Vec<String> = peers
            .iter()
            .take(MAX_PEERS)
            .map(|a| a.to_string())
            .collect();
        let text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
        let path = self.root.join("peers.json");
        let tmp = self.root.join("peers.json.tmp");
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reef-data-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn the_identity_survives_a_restart() {
        let root = temp("identity");
        let first = DataDir::open(&root).expect("open").identity().expect("new");
        let again = DataDir::open(&root)
            .expect("open")
            .identity()
            .expect("read");
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        std::fs::write(root.join("identity.key"), b"garbage").expect("write");
        assert!(matches!(
            DataDir::open(&root).expect("open").identity(),
            Err(DataDirError::BadIdentity(_))
        ));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn peers_round_trip_and_garbage_is_ignored() {
        let root = temp("peers");
        let dir = DataDir::open(&root).expect("open");
        assert!(dir.peers().is_empty());
        let peers: Vec<Multiaddr> = vec!["/ip4/127.0.0.1/tcp/4001".parse().expect("addr")];
        dir.save_peers(&peers).expect("save");
        assert_eq!(dir.peers(), peers);
        dir.save_peers(&[]).expect("save nothing");
        assert_eq!(
            dir.peers(),
            peers,
            "an empty list does not erase the last one"
        );
        std::fs::write(root.join("peers.json"), b"{not json").expect("write");
        assert!(dir.peers().is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }
}
