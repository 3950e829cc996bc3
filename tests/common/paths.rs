//! The fixtures and datasets embedded in the repository, and manifest sections that use them.

use std::path::{Path, PathBuf};

pub const WIKI_TEST: &str = "wikitext-2-raw-v1/test-00000-of-00001.parquet";
pub const WIKI_VALIDATION: &str = "wikitext-2-raw-v1/validation-00000-of-00001.parquet";
pub const AUSTEN: &str = "gutenberg-austen/test-00000-of-00001.parquet";
pub const WIKI_TEST_SHA256: &str =
    "9619082662b044e93d726cc72eccb8bd74cf1f045b47aeac6a74238f40509345";
pub const WIKI_VALIDATION_SHA256: &str =
    "c8b0b8392de88ea12d4afb764e91d1ef9e4d17eeaeb2d2055a5ee1677dde2963";
pub const AUSTEN_SHA256: &str = "65c3735e7a5f7d306904b37cec16fae96f2804d8b253d097ef9c6aa977d17fc6";

/// A path in the checkout.
pub fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// The trained tiny GPT-NeoX pair and its references.
pub fn fixture_dir() -> PathBuf {
    repo("tests/fixtures/tiny-neox")
}

/// A file under `datasets/`.
pub fn dataset(relative: &str) -> PathBuf {
    repo("datasets").join(relative)
}

/// The `[models]` section: the fixture pair, f32 on the CPU.
pub fn models_toml() -> String {
    format!(
        "[models]\ntarget = {{ path = \"{}\" }}\ndraft = {{ path = \"{}\" }}\ndtype = \"f32\"\ndevice = \"cpu\"\n",
        fixture_dir().join("target").display(),
        fixture_dir().join("draft").display(),
    )
}

/// A `[datasets.NAME]` section for an embedded file, pinned by its sha256.
pub fn dataset_toml(name: &str, label: &str, kind: &str, file: &str, sha256: &str) -> String {
    format!(
        "[datasets.{name}]\nlabel = \"{label}\"\nkind = \"{kind}\"\npath = \"{}\"\nsha256 = \"sha256:{sha256}\"\n",
        dataset(file).display(),
    )
}

/// WikiText-2's validation split as dataset `wikitext2`.
pub fn wikitext_validation_toml() -> String {
    dataset_toml(
        "wikitext2",
        "WikiText-2",
        "wikitext",
        WIKI_VALIDATION,
        WIKI_VALIDATION_SHA256,
    )
}

/// Writes `text` to `dir/file` and returns the path.
pub fn write_manifest(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    path
}
