//! The three `qemu-img` operations the store needs (`info`, `check`, an unsafe `rebase`), run
//! through `boma_exec`, and the pure parse of `qemu-img info --output=json`.

use boma_exec::CmdExt as _;
use camino::Utf8Path;
use xshell::{Shell, cmd};

use crate::error::StoreError;

/// What the store reads from `qemu-img info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    /// The backing file name exactly as the header holds it.
    pub backing_filename: Option<String>,
    /// The same, resolved against the image's directory (qemu's view of it).
    pub full_backing_filename: Option<String>,
    pub backing_format: Option<String>,
}

/// Parses `qemu-img info --output=json` for one image (not `--backing-chain`).
pub fn parse_info(json: &str) -> Result<ImageInfo, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("qemu-img info printed no json: {e}"))?;
    let text = |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Ok(ImageInfo {
        format: text("format").ok_or("qemu-img info gave no `format`")?,
        backing_filename: text("backing-filename"),
        full_backing_filename: text("full-backing-filename"),
        backing_format: text("backing-filename-format"),
    })
}

fn shell() -> Result<Shell, StoreError> {
    Shell::new().map_err(|e| StoreError::Shell(e.to_string()))
}

/// `qemu-img info` of one image. Fails while a running QEMU has the image open for writing
/// (qemu's own image lock), which is what the store wants: an overlay still in use is no
/// layer.
pub fn info(path: &Utf8Path) -> Result<ImageInfo, StoreError> {
    let sh = shell()?;
    let json = cmd!(sh, "qemu-img info --output=json {path}")
        .exec()
        .read()?;
    parse_info(&json).map_err(|reason| StoreError::QemuImgOutput {
        path: path.to_owned(),
        reason,
    })
}

/// What `qemu-img check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// No errors (leaked clusters, exit 3, only waste space and count as clean).
    Clean,
    /// Corruption, or the image or its backing chain could not be opened; with qemu-img's
    /// words.
    Broken { status: Option<i32>, output: String },
}

/// `qemu-img check`, which also opens the whole backing chain.
pub fn check(path: &Utf8Path) -> Result<CheckOutcome, StoreError> {
    let sh = shell()?;
    let out = cmd!(sh, "qemu-img check {path}")
        .exec()
        .allow_fail()
        .run()?;
    // 0: clean; 3: leaked clusters only (qemu-img(1) "EXIT STATUS").
    match out.status.code() {
        Some(0 | 3) => Ok(CheckOutcome::Clean),
        status => Ok(CheckOutcome::Broken {
            status,
            output: format!("{}{}", out.stdout, out.stderr).trim().to_owned(),
        }),
    }
}

/// Points `path`'s header at `backing` without reading or writing any data (`rebase -u`): only
/// correct when `backing` holds exactly the content the image was written on top of.
pub fn rebase_unsafe(path: &Utf8Path, backing: &Utf8Path) -> Result<(), StoreError> {
    let sh = shell()?;
    cmd!(sh, "qemu-img rebase -u -F qcow2 -b {backing} {path}")
        .exec()
        .run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_info_of_a_layer_and_of_a_base_image() {
        let layer = include_str!("../tests/fixtures/qemu-img-info-layer.json");
        assert_eq!(
            parse_info(layer).unwrap(),
            ImageInfo {
                format: "qcow2".to_owned(),
                backing_filename: Some("/tmp/qi/golden.qcow2".to_owned()),
                full_backing_filename: Some("/tmp/qi/golden.qcow2".to_owned()),
                backing_format: Some("qcow2".to_owned()),
            }
        );
        let golden = include_str!("../tests/fixtures/qemu-img-info-golden.json");
        let info = parse_info(golden).unwrap();
        assert_eq!(info.backing_filename, None);
        assert_eq!(info.format, "qcow2");
        assert!(parse_info("qemu-img: Could not open").is_err());
    }
}
