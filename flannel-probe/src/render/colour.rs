//! Colour in text output: severity words (and the verdict) painted with
//! ANSI SGR codes, only when a person is looking. JSON, npd and metrics
//! never pass through here: machines read those.
use std::ffi::OsStr;

/// `--color`: `auto` paints only on a terminal and only without `NO_COLOR`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

/// Whether to paint. `always` and `never` are the user's explicit word and
/// win over `NO_COLOR` (https://no-color.org lets a flag override it);
/// `auto` needs a terminal and `NO_COLOR` unset or empty.
pub(crate) fn enabled(choice: ColorChoice, no_color: Option<&OsStr>, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && no_color.is_none_or(OsStr::is_empty),
    }
}

/// [`enabled`] for this process's stdout.
pub(crate) fn for_stdout(choice: ColorChoice) -> bool {
    use std::io::IsTerminal as _;
    enabled(
        choice,
        std::env::var_os("NO_COLOR").as_deref(),
        std::io::stdout().is_terminal(),
    )
}

const RESET: &str = "\x1b[0m";

fn sgr(word: &str) -> Option<&'static str> {
    Some(match word {
        "CRITICAL" => "\x1b[1;31m",
        "WARNING" => "\x1b[1;33m",
        "INFO" => "\x1b[36m",
        "HEALTHY" => "\x1b[1;32m",
        _ => return None,
    })
}

/// Paints the severity word a line starts with (`CRITICAL CODE: ...`,
/// `WARNING ...`) and the verdict of the first line (`flannel-probe on
/// HOST: HEALTHY`). Text from peers and the kernel is never parsed for
/// words: only these two places, which the renderers write themselves.
pub(crate) fn paint(text: &str, on: bool) -> String {
    if !on {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let word_end = line
            .find(|c: char| !c.is_ascii_uppercase())
            .unwrap_or(line.len());
        let (word, rest) = line.split_at(word_end);
        if let (Some(code), true) = (sgr(word), rest.starts_with([' ', ':'])) {
            out.push_str(code);
            out.push_str(word);
            out.push_str(RESET);
            out.push_str(rest);
            continue;
        }
        if i == 0
            && line.starts_with("flannel-probe ")
            && let Some(at) = line.find(": ")
        {
            let (head, tail) = line.split_at(at + 2);
            let end = tail
                .find(|c: char| !c.is_ascii_uppercase())
                .unwrap_or(tail.len());
            if let Some(code) = sgr(&tail[..end]) {
                out.push_str(head);
                out.push_str(code);
                out.push_str(&tail[..end]);
                out.push_str(RESET);
                out.push_str(&tail[end..]);
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_colour_decision() {
        let set = Some(OsStr::new("1"));
        let empty = Some(OsStr::new(""));
        // auto: a terminal and no NO_COLOR (an empty one counts as unset).
        assert!(enabled(ColorChoice::Auto, None, true));
        assert!(enabled(ColorChoice::Auto, empty, true));
        assert!(!enabled(ColorChoice::Auto, set, true));
        assert!(
            !enabled(ColorChoice::Auto, None, false),
            "never into a pipe"
        );
        assert!(!enabled(ColorChoice::Auto, set, false));
        // The explicit choices win over NO_COLOR and the terminal test.
        for (no_color, tty) in [(None, false), (set, true), (set, false), (None, true)] {
            assert!(enabled(ColorChoice::Always, no_color, tty));
            assert!(!enabled(ColorChoice::Never, no_color, tty));
        }
    }

    #[test]
    fn paints_severity_words_and_the_verdict_only() {
        let text = "flannel-probe on gladius: CRITICAL: 1 critical, 0 warnings (5.0s window)\n\
                    \n\
                    CRITICAL PEER_PORT_UNREACHABLE [192.0.2.13]: WARNING in a summary stays\n\
                    WARNING  NO_VXLAN_TRAFFIC: quiet\n\
                    INFO     X_Y: fyi\n\
                    Drops: none\n";
        let p = paint(text, true);
        assert!(p.starts_with("flannel-probe on gladius: \x1b[1;31mCRITICAL\x1b[0m: 1 critical"));
        assert!(p.contains(
            "\n\x1b[1;31mCRITICAL\x1b[0m PEER_PORT_UNREACHABLE [192.0.2.13]: WARNING in a summary stays\n"
        ));
        assert!(p.contains("\n\x1b[1;33mWARNING\x1b[0m  NO_VXLAN_TRAFFIC: quiet\n"));
        assert!(p.contains("\n\x1b[36mINFO\x1b[0m     X_Y: fyi\n"));
        assert!(p.ends_with("\nDrops: none\n"));
        assert_eq!(p.matches("\x1b[").count(), 8, "4 words, each set and reset");
        // Stripped of the codes it is the plain text again.
        let stripped = p
            .replace("\x1b[0m", "")
            .replace("\x1b[1;31m", "")
            .replace("\x1b[1;33m", "")
            .replace("\x1b[36m", "");
        assert_eq!(stripped, text);
        assert_eq!(paint(text, false), text);
        let healthy = paint("flannel-probe mesh: HEALTHY: 0 lossy links\n", true);
        assert_eq!(
            healthy,
            "flannel-probe mesh: \x1b[1;32mHEALTHY\x1b[0m: 0 lossy links\n"
        );
    }
}
