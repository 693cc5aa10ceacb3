//! The layering rule of ARCHITECTURE.md, enforced: every `crate::` path in
//! a module's code (its tests apart) points down, to a module of a lower
//! rank. Modules of one rank do not use each other. In the spirit of
//! rust-analyzer's `tidy` tests: a text check over the source, failing with
//! the file, the line and the arrow that points up.

use std::path::Path;

/// Each module's rank, lowest first (see ARCHITECTURE.md, "Layers").
const RANKS: &[(&str, u32)] = &[
    // Records: types and validation, no I/O; and tools that use nothing of
    // the crate (secret files, descriptor limits, the metrics registry).
    ("model", 0),
    ("files", 1),
    ("limits", 1),
    ("crypto", 1),
    ("metrics", 1),
    // Storage: SQL only.
    ("store", 10),
    // Knowledge: vendor data, templates, the SIP and push machinery, and
    // small tools under them.
    ("guard", 20),
    ("sip", 20),
    ("render", 21),
    ("profiles", 22),
    ("push", 23),
    // Operations: who calls, what they may do, and what is done.
    ("auth", 30),
    ("service", 31),
    ("provision", 32),
    ("bootstrap", 33),
    // Front ends and wiring: wire formats, listeners, the API, the UI, the
    // command line.
    ("client", 40),
    ("config", 40),
    ("handset_csv", 40),
    ("tls", 41),
    ("http_listener", 41),
    ("api", 42),
    ("provision::http", 42),
    ("tftp", 42),
    ("monitoring", 42),
    ("admin", 43),
    ("server", 44),
    ("cli", 45),
];

fn rank(module: &str) -> Option<u32> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// `src/provision/http.rs` → `provision::http` (a front end inside its
/// module); any other file → its top module.
fn module_of(relative: &Path) -> String {
    let parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if parts.len() > 1 && parts[0] == "provision" && parts[1] == "http" {
        return "provision::http".into();
    }
    parts[0].clone()
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for path in all {
        let relative = path.strip_prefix(&src).unwrap();
        let module = module_of(relative);
        if matches!(module.as_str(), "lib" | "main" | "tidy") {
            continue;
        }
        let from = rank(&module).unwrap_or_else(|| panic!("{}: module {module} has no rank in src/tidy.rs", relative.display()));
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (i, _) in line.match_indices("crate::") {
                let path: String = line[i + 7..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                let top = path.split("::").next().unwrap_or("");
                let target = if path.starts_with("provision::http") { "provision::http" } else { top };
                if target == module || target.is_empty() || (module == "provision::http" && target == "provision") {
                    continue;
                }
                match rank(target) {
                    Some(to) if to < from => {}
                    _ => wrong.push(format!("{}:{}: {module} → {target}", relative.display(), n + 1)),
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports that do not point down (see ARCHITECTURE.md, Layers):\n{}", wrong.join("\n"));
}

/// The code of `line`: what comes before a `//` comment that is not inside
/// a string literal (`"https://…"` is code).
fn code_of(line: &str) -> &str {
    let (mut in_string, mut escaped) = (false, false);
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Whether `word` (lower case) is in `line` (lower-cased) with no ASCII
/// letter either side: `family/x.cfg`, `"family"`, `family_ca` count;
/// a longer word that merely contains it does not.
fn names(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphabetic());
        let after = line[i + word.len()..].chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        !before && !after
    })
}

/// A new vendor is data only (ARCHITECTURE.md, "Adding a vendor"): no code
/// under `src/` (its unit tests included) names a vendor family, whatever
/// case it is written in; only comments may. The families are those of
/// `vendor-profiles/*.toml` (a profile's file is named after its family).
#[test]
fn no_vendor_family_in_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut families = Vec::new();
    for entry in std::fs::read_dir(root.join("vendor-profiles")).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "toml") {
            families.push(path.file_stem().unwrap().to_string_lossy().to_lowercase());
        }
    }
    assert!(!families.is_empty(), "no vendor-profiles/*.toml");
    let src = root.join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for path in all {
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = code_of(line.trim_start()).to_lowercase();
            for family in families.iter().filter(|f| names(&code, f)) {
                wrong.push(format!("{}:{}: {family}", path.strip_prefix(root).unwrap().display(), n + 1));
            }
        }
    }
    assert!(wrong.is_empty(), "vendor families named in code (move the knowledge into vendor-profiles/):\n{}", wrong.join("\n"));
}

#[test]
fn comments_and_words_are_told_apart() {
    assert_eq!(code_of(r#"let u = "https://x"; // acme"#), r#"let u = "https://x"; "#);
    assert_eq!(code_of(r#"let q = "\"//"; // c"#), r#"let q = "\"//"; "#);
    assert!(names("\"acme/mac.cfg\"", "acme"));
    assert!(names("acme_ca", "acme"));
    assert!(!names("acmesip", "acme"));
}
