//! The `[dependencies]` samples in the READMEs and crate docs name only crates a reader can
//! add: this workspace's published packages (at a version they match) or a well-known crate.
//!
//! A sample that names a package this workspace doesn't publish (an old name, a typo, another
//! project's crate) fails here, so the first lines a new user copies can't drift from the
//! package names in the manifests.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates the samples may name beside this workspace's packages: the ones an app using the
/// library already depends on or is told to add.
const WELL_KNOWN: &[&str] = &[
    "async-trait",
    "axum",
    "bincode",
    "deadpool-redis",
    "http",
    "hyper",
    "serde",
    "serde_json",
    "sqlx",
    "tokio",
    "tower",
    "tower-http",
    "tracing",
    "tracing-subscriber",
];

/// One dependency line of a sample: where it is, the crate it names, and its version
/// requirement when the line gives one.
#[derive(Debug)]
struct DependencyLine {
    place: String,
    name: String,
    version: Option<String>,
}

/// The dependency lines of every ```` ```toml ```` block in `text` that sit under a
/// `[dependencies]`-like table (`[dependencies]`, `[dev-dependencies]`,
/// `[build-dependencies]`, `[target.'…'.dependencies]`).
fn dependency_lines(file: &str, text: &str) -> Vec<DependencyLine> {
    let mut found = Vec::new();
    let mut in_toml = false;
    let mut in_dependencies = false;
    for (number, raw) in text.lines().enumerate() {
        // Crate docs carry their samples in `//!` or `///` comments.
        let line = raw.trim_start();
        let line = line
            .strip_prefix("//!")
            .or_else(|| line.strip_prefix("///"))
            .unwrap_or(line)
            .trim();
        if let Some(fence) = line.strip_prefix("```") {
            in_toml = !in_toml && fence.trim() == "toml";
            in_dependencies = false;
            continue;
        }
        if !in_toml || line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            let table = line.trim_matches(|c| c == '[' || c == ']');
            in_dependencies = table.ends_with("dependencies");
            continue;
        }
        if !in_dependencies {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        // `name.workspace = true` and `name = { … }` both name `name`.
        let name = key.trim().split('.').next().unwrap_or("").trim().to_owned();
        let value = value.split('#').next().unwrap_or("").trim();
        let version = if let Some(plain) = value.strip_prefix('"') {
            plain.split('"').next().map(str::to_owned)
        } else {
            value.split_once("version").and_then(|(_, rest)| {
                rest.trim_start()
                    .strip_prefix('=')?
                    .trim_start()
                    .strip_prefix('"')?
                    .split('"')
                    .next()
                    .map(str::to_owned)
            })
        };
        found.push(DependencyLine {
            place: format!("{file}:{}", number + 1),
            name,
            version,
        });
    }
    found
}

/// What is wrong with one line, given the workspace's published packages and their versions.
fn check(line: &DependencyLine, published: &BTreeMap<String, String>) -> Option<String> {
    if let Some(version) = published.get(&line.name) {
        let requirement = line.version.as_deref()?;
        let bare = requirement.trim_start_matches(['^', '=', '~']);
        // "0.1" and "0.1.0" both match 0.1.0; anything else sends the reader elsewhere.
        let matches =
            version == bare || version.starts_with(&format!("{bare}.")) || bare.is_empty();
        return (!matches).then(|| {
            format!(
                "{}: `{}` asks for {requirement:?}, but the workspace's package is at {version}",
                line.place, line.name
            )
        });
    }
    if WELL_KNOWN.contains(&line.name.as_str()) {
        return None;
    }
    Some(format!(
        "{}: `{}` is not a published package of this workspace (they are: {}) nor a \
         well-known dependency",
        line.place,
        line.name,
        published.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

/// The workspace's members, as `cargo metadata` reads them from the manifests: name, version,
/// folder, and whether it is published.
fn members() -> Vec<(String, String, PathBuf, bool)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    metadata["packages"]
        .as_array()
        .expect("a package list")
        .iter()
        .map(|package| {
            let manifest = PathBuf::from(package["manifest_path"].as_str().expect("a path"));
            // `publish = false` reads as an empty registry list; absent means crates.io.
            let published = package["publish"]
                .as_array()
                .is_none_or(|registries| !registries.is_empty());
            (
                package["name"].as_str().expect("a name").to_owned(),
                package["version"].as_str().expect("a version").to_owned(),
                manifest.parent().expect("a folder").to_path_buf(),
                published,
            )
        })
        .collect()
}

/// The files whose samples a reader copies: the main README, and each member's README and
/// crate docs.
fn documents(members: &[(String, String, PathBuf, bool)]) -> Vec<PathBuf> {
    let mut files = vec![workspace_root().join("README.md")];
    for (_, _, folder, _) in members {
        for file in ["README.md", "src/lib.rs"] {
            let path = folder.join(file);
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files
}

#[test]
fn every_dependency_sample_names_a_package_of_this_workspace() {
    let members = members();
    let published: BTreeMap<String, String> = members
        .iter()
        .filter(|(_, _, _, published)| *published)
        .map(|(name, version, _, _)| (name.clone(), version.clone()))
        .collect();
    assert!(
        published.contains_key("sessionkit-tower") && published.len() >= 6,
        "the published packages: {published:?}"
    );

    let root = workspace_root();
    let mut lines = Vec::new();
    for file in documents(&members) {
        let text = std::fs::read_to_string(&file).expect("the document reads");
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        lines.extend(dependency_lines(&shown, &text));
    }
    // The main README's first sample is there and read: a parser that finds nothing proves
    // nothing.
    assert!(
        lines
            .iter()
            .any(|line| line.place.starts_with("README.md:") && line.name == "sessionkit-tower"),
        "no `sessionkit-tower` line found in README.md's samples: {lines:?}"
    );
    let problems: Vec<String> = lines
        .iter()
        .filter_map(|line| check(line, &published))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_published_package_has_its_readme_and_license_files() {
    for (name, _, folder, published) in members() {
        if !published {
            continue;
        }
        for file in ["README.md", "LICENSE-MIT", "LICENSE-APACHE"] {
            let path = folder.join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{name}: {} does not read: {e}", path.display()));
            assert!(!text.trim().is_empty(), "{name}: {file} is empty");
        }
        let readme = std::fs::read_to_string(folder.join("README.md")).expect("read above");
        assert!(
            readme.starts_with(&format!("# {name}\n")) && readme.contains("#readme)"),
            "{name}: its README names the package and links to the main README"
        );
    }
}

#[test]
fn the_checker_refuses_names_this_workspace_does_not_publish() {
    let sample = "\
```toml
[dependencies]
sessions-core = \"0.1\"
sessionkit-tower = { version = \"0.2\", default-features = false }
sessionkit-memory.workspace = true
tokio = { version = \"1\", features = [\"full\"] }
```
";
    let published = BTreeMap::from([
        ("sessionkit-tower".to_owned(), "0.1.0".to_owned()),
        ("sessionkit-memory".to_owned(), "0.1.0".to_owned()),
    ]);
    let lines = dependency_lines("sample.md", sample);
    let names: Vec<&str> = lines.iter().map(|line| line.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "sessions-core",
            "sessionkit-tower",
            "sessionkit-memory",
            "tokio"
        ]
    );
    let problems: Vec<String> = lines
        .iter()
        .filter_map(|line| check(line, &published))
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("sample.md:3: `sessions-core` is not a published package"));
    assert!(problems[1].contains("asks for \"0.2\""), "{}", problems[1]);
}
