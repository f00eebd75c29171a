//! `reef`: run a node, make a network secret, turn a URL into its CDN form, read a node's
//! status.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use node::run::NodeArgs;
use node::secret::NetworkSecret;

#[derive(Parser, Debug)]
#[command(name = "reef", version, about = "A peer-to-peer cooperative CDN node")]
// A later occurrence of an option replaces an earlier one: the command line comes after the
// words of a --config file.
#[command(args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node: the overlay, the caching proxy, the nameserver and the admin port. Runs on
    /// embedded defaults (loopback, development secret) with no options at all.
    Node(Box<NodeArgs>),
    /// Network secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print the CDN form of a URL (`http://www.example.com/a` ->
    /// `http://www.example.com.<zone>/a`).
    Url {
        /// The origin URL.
        url: String,
        /// The network's zone.
        #[arg(long, env = "REEF_ZONE", default_value = "cdn")]
        zone: String,
    },
    /// Publisher keys (for signed purges).
    #[command(subcommand)]
    Publisher(PublisherCommand),
    /// Remove an object (or, with --prefix, every object under a URL) from every node of the
    /// network: signs the purge with a publisher key the site lists in its
    /// /.well-known/reef.json and sends it to one node, which floods it.
    Purge {
        /// The origin URL (`http://www.example.com/a.png`), or with --prefix the start of
        /// the URLs to purge (`http://www.example.com/img/`).
        url: String,
        /// Purge every URL that starts with URL.
        #[arg(long)]
        prefix: bool,
        /// The publisher key (from `reef publisher keygen`).
        #[arg(long, env = "REEF_PUBLISHER_KEY", value_name = "FILE")]
        key: PathBuf,
        /// A node's proxy address.
        #[arg(
            long,
            env = "REEF_NODE",
            default_value = "127.0.0.1:8080",
            value_name = "HTTP_ADDR"
        )]
        node: std::net::SocketAddr,
    },
    /// Print the README's generated reference sections (`options` or `metrics`).
    #[command(hide = true)]
    Docs {
        /// `options` or `metrics`.
        section: String,
    },
    /// Print a running node's status for a person.
    Status {
        /// The node's admin address.
        #[arg(long, env = "REEF_ADMIN", default_value = "127.0.0.1:9090")]
        admin: std::net::SocketAddr,
    },
}

#[derive(Subcommand, Debug)]
enum SecretCommand {
    /// Make a new random network secret (file mode 0600). Every node of a network needs the
    /// same one; handing out a new one rolls out an incompatible network.
    New {
        /// Write it to this file (which must not exist) instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PublisherCommand {
    /// Make an Ed25519 key pair for signing purges (file mode 0600) and print its public
    /// key, to list under "purge_keys" in the site's /.well-known/reef.json.
    Keygen {
        /// Write the key pair to this file (which must not exist).
        #[arg(long)]
        out: PathBuf,
    },
}

/// The command line, with the words of `reef node --config FILE` placed before it.
fn parse() -> anyhow::Result<Cli> {
    use clap::CommandFactory;
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("node")
        && let Some(path) = node::config_file::named(&args)
    {
        let command = Cli::command();
        let options: Vec<String> = command
            .find_subcommand("node")
            .map(|node| {
                node.get_arguments()
                    .filter_map(|a| a.get_long().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let env_name = |option: &str| format!("REEF_{}", option.replace('-', "_").to_uppercase());
        let words =
            node::config_file::read(&path, &options, |o| std::env::var_os(env_name(o)).is_some())?;
        args.splice(2..2, words);
    }
    Ok(Cli::parse_from(args))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match parse()?.command {
        Command::Node(args) => node::run::run(*args).await,
        Command::Secret(SecretCommand::New { out }) => {
            let secret = NetworkSecret::generate()?;
            match out {
                Some(path) => {
                    secret.save_new(&path)?;
                    eprintln!(
                        "wrote a new network secret to {} (mode 0600)",
                        path.display()
                    );
                }
                None => print!("{}", secret.to_text()),
            }
            Ok(())
        }
        Command::Url { url, zone } => {
            println!("{}", node::cli::cdn_url(&url, &zone)?);
            Ok(())
        }
        Command::Publisher(PublisherCommand::Keygen { out }) => {
            let public = node::publisher::keygen(&out)?;
            eprintln!(
                "wrote a publisher key pair to {} (mode 0600)",
                out.display()
            );
            eprintln!("serve this at /.well-known/reef.json on your origin:");
            println!(
                "{}",
                serde_json::json!({"purge_keys": [public], "opt_out": false, "mirrors": []})
            );
            Ok(())
        }
        Command::Purge {
            url,
            prefix,
            key,
            node,
        } => {
            let key = node::publisher::load_key(&key)?;
            let purge = node::publisher::sign(&key, &url, prefix)?;
            let (status, answer) = node::publisher::send(node, &purge).await?;
            if status != 200 {
                anyhow::bail!("the node refused the purge: {answer}");
            }
            println!("{answer}");
            Ok(())
        }
        Command::Docs { section } => {
            match section.as_str() {
                "options" => print!("{}", node::reference::options()),
                "metrics" => print!("{}", node::reference::metrics_list()),
                other => anyhow::bail!("{other:?}: expected options or metrics"),
            }
            Ok(())
        }
        Command::Status { admin } => {
            print!("{}", node::cli::status_text(admin).await?);
            Ok(())
        }
    }
}
