//! `reef node --config FILE`: the same options as the command line, in TOML.
//!
//! ```toml
//! zone = "cdn.example.net"
//! http = "0.0.0.0:80"
//! bootstrap = ["/ip4/192.0.2.1/tcp/4001", "/ip4/192.0.2.2/tcp/4001"]
//! access-log = true
//! ```
//!
//! Keys are the long option names (`cache-mem` or `cache_mem`). Precedence: the command line,
//! then `REEF_*` environment variables, then the file, then the defaults. The file is turned
//! into command-line words placed before the real ones, so clap checks every value exactly
//! as it checks the command line.

use std::path::{Path, PathBuf};

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Not TOML.
    #[error("config {path}: {reason}")]
    Syntax {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
    /// A key that is no option of `reef node`, or a value of an unusable type.
    #[error("config {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The `--config` file named on the command line (`--config F` or `--config=F`) or in
/// `REEF_CONFIG`.
pub fn named(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("REEF_CONFIG").map(PathBuf::from)
}

/// Command-line words for the TOML `text`. `options` are the long option names `reef node`
/// takes; `is_set_in_env` tells whether an option's `REEF_*` variable is set (the
/// environment wins over the file).
pub fn to_args(
    path: &Path,
    text: &str,
    options: &[String],
    is_set_in_env: impl Fn(&str) -> bool,
) -> Result<Vec<String>, ConfigFileError> {
    let shown = path.display().to_string();
    let table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigFileError::Syntax {
                path: shown.clone(),
                reason: e.message().to_string(),
            })?;
    let key_err = |reason: String| ConfigFileError::Key {
        path: shown.clone(),
        reason,
    };
    let mut out = Vec::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        if name == "config" || !options.contains(&name) {
            return Err(key_err(format!(
                "unknown option `{key}` (the keys are `reef node` option names, e.g. zone, http, cache-mem)"
            )));
        }
        if is_set_in_env(&name) {
            continue;
        }
        let flag = format!("--{name}");
        let scalar = |v: &toml::Value| -> Result<String, ConfigFileError> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                _ => Err(key_err(format!("`{key}`: expected a string or a number"))),
            }
        };
        match value {
            toml::Value::Boolean(true) => out.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in items {
                    out.push(flag.clone());
                    out.push(scalar(item)?);
                }
            }
            other => {
                out.push(flag);
                out.push(scalar(other)?);
            }
        }
    }
    Ok(out)
}

/// Reads `path` and turns it into command-line words (see [`to_args`]).
pub fn read(
    path: &Path,
    options: &[String],
    is_set_in_env: impl Fn(&str) -> bool,
) -> Result<Vec<String>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
        path: path.display().to_string(),
        source,
    })?;
    to_args(path, &text, options, is_set_in_env)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Vec<String> {
        [
            "zone",
            "http",
            "bootstrap",
            "access-log",
            "cache-mem",
            "client-rate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn args(text: &str) -> Result<Vec<String>, ConfigFileError> {
        to_args(Path::new("test.toml"), text, &options(), |_| false)
    }

    #[test]
    fn keys_become_options() {
        let got = args(
            "zone = \"cdn.test\"\ncache_mem = 1024\nclient-rate = 2.5\naccess-log = true\n\
             bootstrap = [\"/ip4/192.0.2.1/tcp/1\", \"/ip4/192.0.2.2/tcp/1\"]\n",
        )
        .expect("valid");
        let line = got.join(" ");
        assert!(line.contains("--zone cdn.test"), "{line}");
        assert!(line.contains("--cache-mem 1024"), "{line}");
        assert!(line.contains("--client-rate 2.5"), "{line}");
        assert!(line.contains("--access-log"), "{line}");
        assert!(
            line.contains("--bootstrap /ip4/192.0.2.1/tcp/1 --bootstrap /ip4/192.0.2.2/tcp/1"),
            "{line}"
        );
        assert!(args("access-log = false").expect("valid").is_empty());
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let got = to_args(
            Path::new("t"),
            "zone = \"a\"\nhttp = \"127.0.0.1:1\"",
            &options(),
            |k| k == "zone",
        )
        .expect("valid");
        assert_eq!(got, vec!["--http".to_string(), "127.0.0.1:1".into()]);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        assert!(matches!(
            args("zone = "),
            Err(ConfigFileError::Syntax { .. })
        ));
        assert!(matches!(
            args("nonsense = 1"),
            Err(ConfigFileError::Key { .. })
        ));
        assert!(matches!(
            args("config = \"x\""),
            Err(ConfigFileError::Key { .. })
        ));
        assert!(matches!(
            args("zone = { a = 1 }"),
            Err(ConfigFileError::Key { .. })
        ));
        assert!(matches!(
            args("bootstrap = [[1]]"),
            Err(ConfigFileError::Key { .. })
        ));
    }

    #[test]
    fn the_file_is_found_on_the_command_line() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            named(&a(&["reef", "node", "--config", "f.toml"])),
            Some("f.toml".into())
        );
        assert_eq!(
            named(&a(&["reef", "node", "--config=g.toml"])),
            Some("g.toml".into())
        );
    }
}
