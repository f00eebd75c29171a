//! The README's reference sections, generated from the code so they cannot drift: the
//! options of `reef node` (names, environment variables, defaults and help, from clap) and
//! the metrics of `/metrics` (from the table that serves them). `reef docs options` and
//! `reef docs metrics` print them; a test compares them with the README.

use clap::Args as _;

use crate::admin::{Status, metrics};
use crate::run::NodeArgs;

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The options of `reef node` as a Markdown table.
pub fn options() -> String {
    let command = NodeArgs::augment_args(clap::Command::new("node"));
    let mut out = String::from("| option | environment | default | what |\n|---|---|---|---|\n");
    for arg in command.get_arguments() {
        if arg.is_hide_set() {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        let takes_value = arg.get_action().takes_values();
        let name = match arg.get_value_names() {
            Some(names) if takes_value => format!("`--{long} {}`", names.join(" ")),
            _ if takes_value => format!("`--{long} {}`", arg.get_id().as_str().to_uppercase()),
            _ => format!("`--{long}`"),
        };
        let env = arg
            .get_env()
            .map_or(String::new(), |e| format!("`{}`", e.to_string_lossy()));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match defaults.as_slice() {
            [] if !takes_value => "off".to_string(),
            [] => String::new(),
            [v] if v == "false" => "off".to_string(),
            vs => format!("`{}`", vs.join(",")),
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            cell(&name),
            env,
            cell(&default),
            cell(&help)
        ));
    }
    out
}

/// The metrics of `/metrics` as a Markdown table.
pub fn metrics_list() -> String {
    let text = metrics(&Status::default());
    let mut out = String::from("| metric | type | what |\n|---|---|---|\n");
    let mut help = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').map_or("", |(_, h)| h);
        } else if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            out.push_str(&format!("| `{name}` | {kind} | {} |\n", cell(help)));
        }
    }
    out
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in `doc`;
/// `None` if the markers are missing.
pub fn splice(doc: &str, name: &str, body: &str) -> Option<String> {
    let begin = format!("<!-- {name}:begin -->\n");
    let end = format!("<!-- {name}:end -->");
    let a = doc.find(&begin)? + begin.len();
    let b = a + doc[a..].find(&end)?;
    Some(format!("{}{body}{}", &doc[..a], &doc[b..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_and_metric_is_listed() {
        let o = options();
        for name in ["`--http ADDR`", "`--secret-file FILE`", "`--access-log`"] {
            assert!(o.contains(name), "{name} missing:\n{o}");
        }
        assert!(o.contains("`REEF_HTTP`") && o.contains("`127.0.0.1:8080`"));
        assert!(
            !o.contains("--protocol-version"),
            "hidden options stay hidden"
        );
        let m = metrics_list();
        assert!(m.contains("| `reef_cache_hits_total` | counter |"), "{m}");
        assert_eq!(
            splice("a\n<!-- x:begin -->\nold\n<!-- x:end -->\nb", "x", "new\n").as_deref(),
            Some("a\n<!-- x:begin -->\nnew\n<!-- x:end -->\nb")
        );
        assert_eq!(splice("no markers", "x", ""), None);
    }
}
