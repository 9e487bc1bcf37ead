//! `kpl site`: the server configurations against the one header table
//! (`kpl::site::headers`), each parsed back from its own syntax, and the site
//! folder the CLI writes (content-hashed model files, every file typed, errors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kpl::site::configs::{self, SiteFiles};
use kpl::site::headers::{
    cache_control, hashed_path_regex, headers_for, is_content_hashed, media_type, CACHE_IMMUTABLE, CACHE_REVALIDATE,
    MEDIA_TYPES, SECURITY_HEADERS,
};
use regex::Regex;

type Map = BTreeMap<String, String>;

fn security() -> Map {
    SECURITY_HEADERS.iter().map(|h| (h.name.to_string(), h.value.to_string())).collect()
}

fn sample_site() -> SiteFiles {
    let files = [
        "index.html",
        "app.js",
        "pkg/kpl_bg.wasm",
        "model/manifest.json",
        "model/image_encoder.0123456789abcdef.gguf",
        "model/chest-xray-pneumonia.fedcba9876543210.kplkb",
        "manifest.webmanifest",
    ];
    SiteFiles { files: files.iter().map(|s| s.to_string()).collect() }
}

/// `(name, value)` pairs captured by `pattern` (groups 1 and 2) in `text`.
fn pairs(pattern: &str, text: &str) -> Map {
    let re = Regex::new(pattern).unwrap();
    re.captures_iter(text).map(|c| (c[1].to_string(), c[2].to_string())).collect()
}

/// The text between `open` and the next `close`.
fn block<'a>(text: &'a str, open: &str, close: &str) -> &'a str {
    let start = text.find(open).unwrap_or_else(|| panic!("no {open:?} in:\n{text}")) + open.len();
    let end = text[start..].find(close).unwrap() + start;
    &text[start..end]
}

#[test]
fn the_hash_rule_and_its_regex_agree() {
    let re = Regex::new(&hashed_path_regex()).unwrap();
    let cases = [
        ("model/image_encoder.0123456789abcdef.gguf", true),
        ("/radiology/kpl/model/malaria-cell.a28a7aaf760f2e12.kplkb", true),
        ("model/image_encoder.gguf", false),
        ("model/image_encoder.0123456789abcde.gguf", false),
        ("model/image_encoder.0123456789ABCDEF.gguf", false),
        ("model/image_encoder.0123456789abcdef.json", false),
        ("app.0123456789abcdef.js", false),
        ("model/manifest.json", false),
    ];
    for (path, hashed) in cases {
        assert_eq!(is_content_hashed(path), hashed, "{path}");
        assert_eq!(re.is_match(path), hashed, "regex on {path}");
        assert_eq!(cache_control(path), if hashed { CACHE_IMMUTABLE } else { CACHE_REVALIDATE });
    }
}

#[test]
fn nginx_sets_the_table() {
    let conf = configs::nginx(&sample_site());
    let (outer, nested) = conf.split_at(conf.find("location ~ \"").expect("a quoted regex location"));
    let add = r#"(?m)^\s*add_header ([\w-]+) "([^"]*)" always;$"#;
    let mut expected = security();
    expected.insert("Cache-Control".into(), CACHE_REVALIDATE.into());
    assert_eq!(pairs(add, outer), expected, "outer headers");
    let regex_line = format!("location ~ \"{}\" {{", hashed_path_regex());
    assert!(nested.starts_with(&regex_line), "{nested}");
    expected.insert("Cache-Control".into(), CACHE_IMMUTABLE.into());
    assert_eq!(pairs(add, nested), expected, "the immutable block repeats every header");
    let lines: Vec<(String, String)> = Regex::new(r"(?m)^\s+([\w+./-]+) (\w+);$")
        .unwrap()
        .captures_iter(block(&conf, "types {", "}"))
        .map(|c| (c[2].to_string(), c[1].to_string()))
        .collect();
    assert_eq!(lines.len(), MEDIA_TYPES.len());
    let charset = block(&conf, "charset_types ", ";");
    for m in MEDIA_TYPES {
        assert!(lines.contains(&(m.extension.to_string(), m.mime.to_string())), "{}", m.extension);
        // nginx always adds text/html to charset_types; the others are listed.
        assert_eq!(m.utf8, m.mime == "text/html" || charset.split(' ').any(|t| t == m.mime), "charset of {}", m.mime);
    }
    assert!(conf.contains("charset utf-8;"));
}

#[test]
fn apache_sets_the_table() {
    let conf = configs::htaccess(&sample_site());
    let (outer, files_match) = conf.split_at(conf.find("<FilesMatch").unwrap());
    let set = r#"(?m)^\s*Header always set ([\w-]+) "([^"]*)"$"#;
    let mut expected = security();
    expected.insert("Cache-Control".into(), CACHE_REVALIDATE.into());
    assert_eq!(pairs(set, outer), expected);
    assert!(files_match.starts_with(&format!("<FilesMatch \"{}\">", hashed_path_regex())));
    let immutable = block(files_match, ">", "</FilesMatch>");
    assert_eq!(pairs(set, immutable), Map::from([("Cache-Control".into(), CACHE_IMMUTABLE.into())]));
    let types: Map = Regex::new(r"(?m)^AddType (\S+) \.(\w+)$")
        .unwrap()
        .captures_iter(&conf)
        .map(|c| (c[2].to_string(), c[1].to_string()))
        .collect();
    let charset: Vec<String> = Regex::new(r"(?m)^AddCharset utf-8 \.(\w+)$").unwrap().captures_iter(&conf).map(|c| c[1].to_string()).collect();
    for m in MEDIA_TYPES {
        assert_eq!(types.get(m.extension).map(String::as_str), Some(m.mime), "{}", m.extension);
        assert_eq!(charset.iter().any(|e| e == m.extension), m.utf8, "charset of {}", m.extension);
    }
}

#[test]
fn caddy_sets_the_table() {
    let conf = configs::caddy(&sample_site());
    let always = pairs(r#"(?m)^\s+([\w-]+) "([^"]*)"$"#, block(&conf, "header {", "}"));
    assert_eq!(always, security());
    let regex = hashed_path_regex();
    assert!(conf.contains(&format!("@kpl_immutable path_regexp {regex}\nheader @kpl_immutable Cache-Control \"{CACHE_IMMUTABLE}\"")));
    assert!(conf.contains(&format!("@kpl_revalidate not path_regexp {regex}\nheader @kpl_revalidate Cache-Control \"{CACHE_REVALIDATE}\"")));
    let matchers = pairs(r"(?m)^@(kpl_type\d+) path (.+)$", &conf);
    let headers = pairs(r#"(?m)^header @(kpl_type\d+) Content-Type "([^"]+)"$"#, &conf);
    for m in MEDIA_TYPES {
        let (name, _) = matchers.iter().find(|(_, pats)| pats.split(' ').any(|p| p == format!("*.{}", m.extension))).expect(m.extension);
        assert_eq!(headers[name], m.content_type(), "{}", m.extension);
    }
}

#[test]
fn iis_sets_the_table() {
    let site = sample_site();
    let conf = configs::web_config(&site);
    let unescape = |s: &str| s.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    let root = block(&conf, "<customHeaders>", "</customHeaders>");
    let mut expected = security();
    expected.insert("Cache-Control".into(), CACHE_REVALIDATE.into());
    let got: Map = pairs(r#"<add name="([^"]+)" value="([^"]*)" />"#, root).into_iter().map(|(k, v)| (k, unescape(&v))).collect();
    assert_eq!(got, expected);
    let mimes: Map = pairs(r#"<mimeMap fileExtension="\.(\w+)" mimeType="([^"]+)" />"#, &conf);
    for m in MEDIA_TYPES {
        assert_eq!(mimes.get(m.extension).map(|v| unescape(v)), Some(m.content_type()), "{}", m.extension);
        assert!(conf.contains(&format!("<remove fileExtension=\".{}\" />", m.extension)));
    }
    let locations: Vec<String> = Regex::new(r#"<location path="([^"]+)">"#).unwrap().captures_iter(&conf).map(|c| c[1].to_string()).collect();
    let hashed: Vec<String> = site.files.iter().filter(|f| is_content_hashed(f)).cloned().collect();
    assert_eq!(locations, hashed);
    assert_eq!(conf.matches(&format!("<add name=\"Cache-Control\" value=\"{CACHE_IMMUTABLE}\" />")).count(), hashed.len());
}

#[test]
fn static_hosts_get_every_file_with_its_headers() {
    let site = sample_site();
    let text = configs::headers_file(&site, "radiology/kpl");
    let mut rules: BTreeMap<String, Map> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        if let Some(rest) = line.strip_prefix("  ") {
            let (name, value) = rest.split_once(": ").unwrap();
            rules.get_mut(&current).unwrap().insert(name.into(), value.into());
        } else {
            current = line.to_string();
            rules.insert(current.clone(), Map::new());
        }
    }
    assert_eq!(rules["/radiology/kpl/*"], security());
    for file in site.files.iter().map(String::as_str).chain([""]) {
        let url = format!("/radiology/kpl/{file}");
        let mut got = rules["/radiology/kpl/*"].clone();
        got.extend(rules.get(&url).unwrap_or_else(|| panic!("no rule for {url}")).clone());
        let expected: Map = headers_for(if file.is_empty() { "index.html" } else { file }).into_iter().collect();
        assert_eq!(got, expected, "{url}");
    }
    assert_eq!(rules.len(), site.files.len() + 2);
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kpl-site-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn kpl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kpl")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

/// A stand-in for `make wasm`'s pkg/ (the Rust tests run before the wasm build).
fn fake_pkg(dir: &Path) -> PathBuf {
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("kpl.js"), "export default function init() {}\n").unwrap();
    std::fs::write(pkg.join("kpl_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(pkg.join("kpl.d.ts"), "").unwrap();
    pkg
}

fn files_under(root: &Path, under: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(root).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if under.is_empty() { name.clone() } else { format!("{under}/{name}") };
        if e.path().is_dir() {
            files_under(&e.path(), &rel, out);
        } else {
            out.push(rel);
        }
    }
}

#[test]
fn the_cli_writes_a_site_with_hashed_model_files_and_its_configurations() {
    let dir = temp_dir("cli");
    let pkg = fake_pkg(&dir);
    let out = dir.join("kpl");
    let model = "tests/fixtures/tiny-quickgelu-f32";
    let run = |out: &Path| {
        kpl(&["site", "--model", model, "--knowledge", "chest-xray-pneumonia", "--pkg", pkg.to_str().unwrap(), "-o", out.to_str().unwrap(), "--threads", "1"])
    };
    let r = run(&out);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let mut files = Vec::new();
    files_under(&out, "", &mut files);
    files.sort();
    let listed: Vec<String> = printed["files"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let mut on_disk: Vec<String> = files.iter().filter(|f| !f.starts_with('.') && *f != "web.config" && *f != "_headers").cloned().collect();
    on_disk.sort();
    let mut expected_listed = listed.clone();
    expected_listed.sort();
    assert_eq!(on_disk, expected_listed, "the printed list is the folder");
    for f in &files {
        // The configuration files themselves are not served (IIS, static hosts, nginx's dotfile rule).
        assert!(media_type(f).is_some() || f.starts_with('.') || *f == "_headers" || *f == "web.config", "{f} has no media type in the table");
    }
    assert!(files.contains(&"pkg/kpl_bg.wasm".to_string()) && !files.iter().any(|f| f.ends_with(".d.ts")));
    assert!(files.iter().all(|f| !f.ends_with(".partial")));
    // The bundle, content-hashed: each name carries the start of its SHA-256.
    let manifest = kpl::bundle::verify_bundle_dir(&out.join("model")).unwrap();
    let image = manifest.files.image_encoder.as_ref().unwrap();
    assert_eq!(image.path, format!("image_encoder.{}.gguf", &image.sha256[..16]));
    assert_eq!(manifest.model.dtype, kpl::bundle::PackDtype::Q8, "q8 by default");
    assert_eq!(manifest.knowledge.len(), 1);
    assert!(is_content_hashed(&manifest.knowledge[0].file.path));
    // The bundle loads and classifies natively as it is.
    kpl::model_dir::load_model_dir(&out.join("model")).unwrap();
    // Configurations: in the folder for Apache, IIS and static hosts; beside it for nginx and Caddy.
    let server = dir.join("kpl.server");
    let site = SiteFiles { files: listed.clone() };
    assert_eq!(std::fs::read_to_string(server.join("nginx.conf")).unwrap(), configs::nginx(&site));
    assert_eq!(std::fs::read_to_string(server.join("Caddyfile")).unwrap(), configs::caddy(&site));
    assert_eq!(std::fs::read_to_string(out.join(".htaccess")).unwrap(), configs::htaccess(&site));
    assert_eq!(std::fs::read_to_string(out.join("web.config")).unwrap(), configs::web_config(&site));
    assert!(std::fs::read_to_string(out.join("web.config")).unwrap().contains(&format!("model/{}", image.path)));

    // Written again over itself (a new model version), and from the bundle it holds.
    let r = kpl(&["site", "--model", out.join("model").to_str().unwrap(), "--pkg", pkg.to_str().unwrap(), "--knowledge", "malaria-cell", "chest-xray-pneumonia", "-o", dir.join("again").to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let again = kpl::bundle::verify_bundle_dir(&dir.join("again/model")).unwrap();
    assert_eq!(again.knowledge.iter().map(|k| k.task.as_str()).collect::<Vec<_>>(), ["chest-xray-pneumonia", "malaria-cell"]);
    assert_eq!(again.files.image_encoder.as_ref().unwrap().sha256, image.sha256);
    assert!(run(&out).status.success(), "a site is replaced by a new one");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cli_refuses_what_it_cannot_do_and_names_it() {
    let dir = temp_dir("errors");
    let pkg = fake_pkg(&dir);
    let pkg = pkg.to_str().unwrap();
    let model = "tests/fixtures/tiny-quickgelu-f32";
    let stderr = |o: Output| {
        assert_eq!(o.status.code(), Some(2));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // An output folder that holds something else is never removed.
    let other = dir.join("documents");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("letter.txt"), "keep me").unwrap();
    let e = stderr(kpl(&["site", "--model", model, "--pkg", pkg, "-o", other.to_str().unwrap()]));
    assert!(e.contains("documents") && e.contains("not a site"), "{e}");
    assert_eq!(std::fs::read_to_string(other.join("letter.txt")).unwrap(), "keep me");
    // No wasm build.
    let e = stderr(kpl(&["site", "--model", model, "--pkg", dir.join("nopkg").to_str().unwrap(), "-o", dir.join("a").to_str().unwrap()]));
    assert!(e.contains("nopkg/kpl.js") && e.contains("make wasm"), "{e}");
    // An unknown task.
    let e = stderr(kpl(&["site", "--model", model, "--pkg", pkg, "--knowledge", "no-such-task", "-o", dir.join("b").to_str().unwrap()]));
    assert!(e.contains("no-such-task") && e.contains("task.json"), "{e}");
    // A folder that is no model.
    let e = stderr(kpl(&["site", "--model", dir.to_str().unwrap(), "--pkg", pkg, "--knowledge", "malaria-cell", "-o", dir.join("c").to_str().unwrap()]));
    assert!(e.contains("config.json"), "{e}");
    assert!(!dir.join("c").exists(), "nothing is left in place of a failed site");
    let _ = std::fs::remove_dir_all(&dir);
}
