//! `--config FILE`: flags from a file, for deployments. One `name = value` per line
//! (TOML's flat subset: strings in double quotes, numbers, `true`/`false`; `#` comments),
//! each the long name of a flag; flags on the command line win, since they come later.

use anyhow::{bail, Context};

/// The command line with any `--config FILE` replaced by the file's flags, placed right
/// after the subcommand words so that the command line's own flags override them.
pub(crate) fn expand(args: Vec<String>) -> anyhow::Result<Vec<String>> {
    let Some(at) = args
        .iter()
        .position(|a| a == "--config" || a.starts_with("--config="))
    else {
        return Ok(args);
    };
    let (path, taken) = match args[at].strip_prefix("--config=") {
        Some(p) => (p.to_owned(), 1),
        None => match args.get(at + 1) {
            Some(p) => (p.clone(), 2),
            None => bail!("--config needs a file"),
        },
    };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading --config {path}"))?;
    let mut flags = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            bail!("{path}:{}: expected `name = value`", n + 1);
        };
        let key = key.trim().replace('_', "-");
        let value = value.trim();
        let value = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            Some(s) => s.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => value.to_owned(),
        };
        match value.as_str() {
            "true" => flags.push(format!("--{key}")),
            "false" => {}
            _ => {
                flags.push(format!("--{key}"));
                flags.push(value);
            }
        }
    }
    let mut out: Vec<String> = args[..at].to_vec();
    // The file's flags go before the command line's remaining ones (later flags win).
    out.extend(flags);
    out.extend(args[at + taken..].iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_becomes_flags_the_command_line_overrides() {
        let path = std::env::temp_dir().join(format!("braid-config-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "# braid\nreasoning_parser = \"qwen3\"\nport = 9000\napi-key = \"k\"\nflag = true\noff = false\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let args: Vec<String> = [
            "braid",
            "serve",
            "M",
            "--config",
            path.to_str().unwrap_or_default(),
            "--port",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = expand(args).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            out,
            [
                "braid",
                "serve",
                "M",
                "--reasoning-parser",
                "qwen3",
                "--port",
                "9000",
                "--api-key",
                "k",
                "--flag",
                "--port",
                "1"
            ]
        );
    }
}
