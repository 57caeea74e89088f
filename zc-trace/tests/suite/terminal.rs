//! The default output as a terminal shows it: `zc-trace run` on a pseudo-terminal of 80 and 120
//! columns has no line wider than the terminal and breaks no word (only `--wide` may be wider),
//! colors its verdicts there unless NO_COLOR, and ends with the summary line.

use crate::common;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};

use unicode_width::UnicodeWidthStr;

/// Runs zc-trace with stdout on a new pty of `cols` columns (stderr too with `with_stderr`:
/// then the progress lines, which redraw themselves, are in the output); its output without
/// the escape codes, and whether there were any.
fn on_pty(cols: u16, args: &[&str], env: &[(&str, &str)]) -> (String, bool) {
    on_pty_with(cols, args, env, false)
}

fn on_pty_with(
    cols: u16,
    args: &[&str],
    env: &[(&str, &str)],
    with_stderr: bool,
) -> (String, bool) {
    let size = nix::pty::Winsize {
        ws_row: 50,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("openpty");
    let slave: OwnedFd = pty.slave;
    let mut child = Command::new(common::bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(slave.try_clone().unwrap())
        .stderr(if with_stderr {
            Stdio::from(slave.try_clone().unwrap())
        } else {
            Stdio::null()
        })
        .spawn()
        .expect("zc-trace runs");
    drop(slave);
    let mut master = std::fs::File::from(pty.master);
    let mut raw = Vec::new();
    // EIO once the child and every copy of the slave are gone: the end of the output.
    let mut buf = [0u8; 65536];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().unwrap();
    let _ = master.as_raw_fd();
    let text = String::from_utf8_lossy(&raw).replace('\r', "");
    assert!(
        status.success(),
        "zc-trace {args:?} on {cols} columns: {status}\n{text}"
    );
    let colored = text.contains("\u{1b}[");
    (strip_escapes(&text), colored)
}

fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ ... final byte in @..~
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

const RUN: &[&str] = &["run", "--size", "1M", "--no-fail"];

macro_rules! fits_test {
    ($name:ident, $cols:expr, $($extra:literal),*) => {
        #[test]
        fn $name() {
            if !common::bpf_available(stringify!($name)) {
                return;
            }
            let mut args = RUN.to_vec();
            let extra: &[&str] = &[$($extra),*];
            args.extend_from_slice(extra);
            let (text, _) = on_pty($cols, &args, &[]);
            for line in text.lines() {
                assert!(
                    line.width() <= $cols,
                    "{} columns wide on a {}-column terminal: {line:?}\n{text}",
                    line.width(),
                    $cols
                );
            }
            // No broken words: every strategy's name and the figures' names are whole on a
            // line (the table wraps cells at spaces only).
            for whole in [
                "read+write", "mmap+write", "sendfile", "vmsplice+splice", "copy_file_range",
                "send(MSG_ZEROCOPY)", "transitions", "hroughput",
            ] {
                assert!(text.contains(whole), "{whole:?} is broken or missing:\n{text}");
            }
            assert!(
                text.lines().any(|l| l.contains("not observable: exit 0 (--no-fail)")),
                "the summary line:\n{text}"
            );
        }
    };
}

fits_test!(the_report_fits_80_columns, 80,);
fits_test!(the_report_fits_120_columns, 120,);
fits_test!(the_explained_report_fits_80_columns, 80, "--explain");

#[test]
fn verdicts_are_colored_on_a_terminal_unless_no_color() {
    if !common::bpf_available("verdicts_are_colored_on_a_terminal_unless_no_color") {
        return;
    }
    let args = [
        "run",
        "--size",
        "64K",
        "--strategies",
        "sendfile",
        "--no-fail",
    ];
    let (_, colored) = on_pty(100, &args, &[]);
    assert!(colored, "no color on a terminal");
    let (_, colored) = on_pty(100, &args, &[("NO_COLOR", "1")]);
    assert!(!colored, "color despite NO_COLOR");
    let mut never = args.to_vec();
    never.extend(["--color", "never"]);
    assert!(!on_pty(100, &never, &[]).1, "color despite --color never");
    // Not a terminal: no color unless asked.
    let out = common::zc_trace(&args);
    assert!(!String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
    let mut always = args.to_vec();
    always.extend(["--color", "always"]);
    let out = common::zc_trace(&always);
    assert!(String::from_utf8_lossy(&out.stdout).contains('\u{1b}'));
}

#[test]
fn progress_is_shown_on_a_terminal_and_not_with_quiet() {
    if !common::bpf_available("progress_is_shown_on_a_terminal_and_not_with_quiet") {
        return;
    }
    let args = [
        "run",
        "--size",
        "1M",
        "--strategies",
        "sendfile,splice",
        "--no-fail",
    ];
    let (text, _) = on_pty_with(100, &args, &[], true);
    assert!(text.contains("[1/2] sendfile, iteration 1/1"), "{text}");
    let mut quiet = args.to_vec();
    quiet.push("--quiet");
    let (text, _) = on_pty_with(100, &quiet, &[], true);
    assert!(!text.contains("iteration 1/1"), "{text}");
    // Not a terminal: nothing on stderr but what matters.
    let out = common::zc_trace(&args);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("iteration"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
