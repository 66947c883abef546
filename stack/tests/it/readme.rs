//! Every command README.md and docs/ tell a reader to run, checked as written: fenced `sh`
//! blocks and inline commands. Our binaries are run with the README's arguments and `--help`
//! appended (clap checks every argument before it shows the help, so a wrong flag or value
//! fails here), scripts must exist and be executable, and `cargo run -p PKG` must resolve
//! to one binary. `docker compose` lines are checked statically by compose.rs.

use std::path::Path;
use std::process::Command;

use testkit::{binary, repo_root};

/// Commands in the README: lines of ```sh blocks, and inline `code` that starts like one.
fn commands_in(readme: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        if let Some(fence) = line.trim_start().strip_prefix("```") {
            in_sh = !in_sh && fence.trim() == "sh";
            continue;
        }
        if in_sh {
            let command = line.split(" #").next().unwrap_or("").trim();
            if !command.is_empty() {
                out.push(command.to_owned());
            }
            continue;
        }
        for (i, span) in line.split('`').enumerate() {
            let looks_runnable = ["scripts/", "target/release/", "cargo run"]
                .iter()
                .any(|start| strip_env(span).starts_with(start));
            // Odd pieces are inside backticks; placeholders like [--port N] are syntax, not commands.
            if i % 2 == 1 && looks_runnable && !span.contains('[') {
                out.push(span.to_owned());
            }
        }
    }
    out
}

/// Drops leading VAR=value assignments.
fn strip_env(command: &str) -> &str {
    let mut rest = command.trim();
    while let Some((first, tail)) = rest.split_once(' ') {
        if first.contains('=') && first.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            rest = tail.trim_start();
        } else {
            break;
        }
    }
    rest
}

/// The binary `cargo run -p package` runs: its default-run, or the package's own name.
fn default_binary(package: &str) -> String {
    let manifest = std::fs::read_to_string(repo_root().join(package).join("Cargo.toml")).unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("default-run = "))
        .map(|name| name.trim_matches('"').to_owned())
        .unwrap_or_else(|| package.to_owned())
}

fn help_with(program: &Path, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} --help: {}{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_command_in_the_readme_runs_as_written() {
    let mut commands = Vec::new();
    for page in [
        "README.md",
        "docs/api.md",
        "docs/architecture.md",
        "docs/ha.md",
    ] {
        let text = std::fs::read_to_string(repo_root().join(page)).unwrap();
        commands.extend(commands_in(&text));
    }
    assert!(commands.len() >= 6, "found {commands:?}");
    for command in &commands {
        let words: Vec<&str> = strip_env(command).split_whitespace().collect();
        match words.as_slice() {
            ["docker", "compose", ..] => {}
            ["cargo", "run", rest @ ..] => {
                let package = rest
                    .windows(2)
                    .find(|w| w[0] == "-p")
                    .map(|w| w[1])
                    .unwrap_or_else(|| panic!("{command}: no -p PACKAGE"));
                let args: Vec<&str> = rest
                    .iter()
                    .skip_while(|w| **w != "--")
                    .skip(1)
                    .copied()
                    .collect();
                help_with(&binary(&default_binary(package)), &args);
            }
            [program, args @ ..] if program.starts_with("target/release/") => {
                help_with(&binary(&program["target/release/".len()..]), args);
            }
            [script, args @ ..] if script.starts_with("scripts/") => {
                use std::os::unix::fs::PermissionsExt;
                let path = repo_root().join(script);
                let mode = std::fs::metadata(&path)
                    .unwrap_or_else(|e| panic!("{command}: {e}"))
                    .permissions()
                    .mode();
                assert!(mode & 0o111 != 0, "{command}: not executable");
                // scripts/run builds, then runs the stack binary with the same arguments.
                if *script == "scripts/run" {
                    help_with(&binary("stack"), args);
                }
            }
            _ => panic!("README command not understood by this test: {command}"),
        }
    }
}

#[test]
fn the_extraction_finds_blocks_and_inline_commands() {
    let sample = "text `LB_MODE=http scripts/run --port 1` and `scripts/run [--limits]`\n```sh\ncargo run -p loadtest -- --scale 0.1   # comment\n```\n```\nnot sh\n```\n";
    assert_eq!(
        commands_in(sample),
        [
            "LB_MODE=http scripts/run --port 1",
            "cargo run -p loadtest -- --scale 0.1"
        ]
    );
    assert_eq!(strip_env("A=1 B=two scripts/run"), "scripts/run");
}

/// The layout table (docs/architecture.md) names every module of every crate, so a
/// newcomer's map of the code cannot fall behind it: each `.rs` file under a crate's `src/`
/// (but `main`, `lib` and `mod`) appears in backticks in that crate's row.
#[test]
fn the_layout_table_names_every_module() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    let mut missing = Vec::new();
    for krate in [
        "api",
        "balancer",
        "serverkit",
        "stack",
        "loadtest",
        "testkit",
    ] {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| `{krate}/` |")))
            .unwrap_or_else(|| panic!("the layout table has no row for {krate}/"));
        let mut stack = vec![root.join(krate).join("src")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    if !row.contains(&format!("`{name}/`")) {
                        missing.push(format!("{krate}: {name}/"));
                    }
                    stack.push(path);
                    continue;
                }
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                let named =
                    row.contains(&format!("`{stem}`")) || row.contains(&format!("`{stem}.rs`"));
                if !["main", "lib", "mod"].contains(&stem.as_str()) && !named {
                    missing.push(format!("{krate}: {}", path.display()));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in docs/architecture.md's layout table: {missing:?}"
    );
}

/// Every command of the repository answers `--help` with its usage and exit 0, and starts
/// nothing: each script of scripts/, bench/, ci/ and .ci/, and each of our binaries. A
/// command that started its work instead would not have finished within the bound.
#[test]
fn every_command_answers_help_and_starts_nothing() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};
    let root = repo_root();
    let mut programs = Vec::new();
    for dir in ["scripts", "bench", "ci/images", ".ci"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            let entrypoint = path.ends_with("postgres-entrypoint.sh"); // the image's, not ours
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 && !entrypoint {
                programs.push(path);
            }
        }
    }
    assert!(programs.len() >= 20, "found {programs:?}");
    for name in ["api", "balancer", "stack", "loadtest", "pace", "soak"] {
        programs.push(binary(name));
    }
    for program in programs {
        let mut child = Command::new(&program)
            .arg("--help")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                panic!(
                    "{} --help is still running: it started work",
                    program.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.trim().lines().count() >= 2,
            "{} --help: {:?}\n{stdout}{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The servers are configured by their environment alone: an argument they do not take is
/// refused with exit 2 and one line that says so, before anything starts (they used to
/// ignore arguments and serve).
#[test]
fn the_servers_refuse_arguments_they_do_not_take() {
    for name in ["api", "balancer"] {
        let output = Command::new(binary(name))
            .arg("--port")
            .env_clear()
            .output()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
        assert!(
            stderr.contains("unexpected argument \"--port\""),
            "{name}: {stderr}"
        );
    }
}
