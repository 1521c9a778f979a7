//! The application `cargo mirage new NAME` writes: a small web server on
//! every target.
//!
//! | file | what |
//! |---|---|
//! | `Cargo.toml` | the package: `mirage-rs = "0.1"`, `log` without default features |
//! | `src/lib.rs` | `start<P: Platform, D: Devices>`: takes the stack `net0`, listens on TCP port 8080 (`--port N`), answers `GET /` with `hello from NAME`, one task per connection, bounded request heads, a 400 for what is not a request line; unit tests |
//! | `src/main.rs` | the entry line for every target: `mirage::main!(NAME::start);` |
//! | `tests/greeting.rs` | runs the built program on a free port and fetches the greeting |
//! | `README.md` | how to run it on each target |
//! | `.gitignore` | `/target` |
//!
//! The library is `#![no_std]` (with `alloc`), so it links into the
//! kernel images unchanged.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{Error, ErrorKind};

/// The files of the template, by path in the new crate, with
/// `{{name}}` and `{{crate}}` to replace.
const FILES: [(&str, &str); 6] = [
    ("Cargo.toml", include_str!("../template/Cargo.toml.in")),
    ("src/lib.rs", include_str!("../template/lib.rs.in")),
    ("src/main.rs", include_str!("../template/main.rs.in")),
    ("tests/greeting.rs", include_str!("../template/greeting.rs.in")),
    ("README.md", include_str!("../template/README.md.in")),
    (".gitignore", include_str!("../template/gitignore.in")),
];

/// Names a package may not take: Rust's own crates, ours, and what cargo
/// refuses.
const RESERVED: [&str; 10] =
    ["mirage", "mirage_rs", "std", "core", "alloc", "proc_macro", "test", "build", "deps", "examples"];

/// One file of a new application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Its path in the crate.
    pub path: &'static str,
    /// What it holds.
    pub contents: String,
}

/// Fails with the rule when `name` cannot name an application package:
/// ASCII letters, digits, `-` and `_`, starting with a letter, not a
/// Rust keyword, nor a crate name of Rust or of mirage-rs (`std`, `mirage`, ...).
pub fn check_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::new(ErrorKind::BadArgument, format!("{name:?} cannot name an application: {why}"));
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(bad("it must start with an ASCII letter"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("use ASCII letters, digits, '-' and '_' only"));
    }
    let ident = name.replace('-', "_");
    if RESERVED.contains(&ident.as_str()) || is_keyword(&ident) {
        return Err(bad("that name is reserved (a Rust keyword or crate, or mirage-rs's own); choose another"));
    }
    Ok(())
}

fn is_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
        "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self",
        "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract",
        "become", "box", "do", "final", "gen", "macro", "override", "priv", "try", "typeof", "unsized", "virtual",
        "yield",
    ];
    KEYWORDS.contains(&word)
}

/// The files of the application `name`.
pub fn files(name: &str) -> Result<Vec<File>, Error> {
    check_name(name)?;
    let ident = name.replace('-', "_");
    Ok(FILES
        .iter()
        .map(|(path, text)| File { path, contents: text.replace("{{name}}", name).replace("{{crate}}", &ident) })
        .collect())
}

/// Writes the application `name` into `dir` (created; it must not exist
/// or be empty) and returns the files' paths.
pub fn create(dir: &Path, name: &str) -> Result<Vec<PathBuf>, Error> {
    let files = files(name)?;
    if dir.exists() {
        let mut entries = fs::read_dir(dir).map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
        if entries.next().is_some() {
            return Err(Error::new(
                ErrorKind::BadArgument,
                format!("{} exists and is not empty: choose another name or --path DIR", dir.display()),
            ));
        }
    }
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
        }
        fs::write(&path, file.contents).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["greeter", "my-app", "a_1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1app", "my app", "mirage", "mirage-rs", "std", "fn", "é"] {
            assert_eq!(check_name(bad).unwrap_err().kind(), ErrorKind::BadArgument, "{bad}");
        }
    }

    #[test]
    fn the_files_carry_the_name() {
        let files = files("my-app").unwrap();
        let file = |path: &str| &files.iter().find(|f| f.path == path).unwrap().contents;
        assert!(file("Cargo.toml").contains("name = \"my-app\"") && file("Cargo.toml").contains("mirage-rs = \"0.1\""));
        assert!(file("src/main.rs").contains("mirage::main!(my_app::start);"));
        assert!(file("src/main.rs").starts_with("#![cfg_attr(panic = \"abort\", no_std, no_main)]"));
        assert!(file("src/lib.rs").contains("#![no_std]") && file("src/lib.rs").contains("hello from my-app\\n"));
        assert!(file("tests/greeting.rs").contains("CARGO_BIN_EXE_my-app"));
        assert!(files.iter().all(|f| !f.contents.contains("{{")), "a placeholder is left");
    }

    #[test]
    fn create_refuses_a_directory_with_files() {
        let dir = std::env::temp_dir().join(format!("cargo-mirage-template-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let written = create(&dir, "greeter").unwrap();
        assert_eq!(written.len(), FILES.len());
        assert!(dir.join("src/lib.rs").is_file() && dir.join(".gitignore").is_file());
        let e = create(&dir, "greeter").unwrap_err();
        let _ = fs::remove_dir_all(&dir);
        assert!(e.message().contains("not empty"), "{e}");
    }
}
