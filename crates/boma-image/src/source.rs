//! Where a downloaded image comes from: its URL and the `SHA512SUMS` beside it, and what those URLs mean.

use camino::Utf8PathBuf;

use crate::CacheError;
use crate::layout::check_name;

/// Debian's published genericcloud image for trixie, the default golden image.
pub const DEBIAN_GENERICCLOUD_URL: &str =
    "https://cloud.debian.org/images/cloud/trixie/latest/debian-13-genericcloud-amd64.qcow2";

/// The checksum file Debian publishes in every image directory.
pub const SUMS_FILE: &str = "SHA512SUMS";

/// An image to download and the checksum file that vouches for it. (Named apart from the
/// harness's `ImageSource`, which chooses between downloading, building and a given file.)
///
/// Either URL may be `http://`, `https://`, `file:///abs/path` or a plain path (a local
/// mirror). The image's file name, and so its name in the cache, is the last URL segment; the
/// cache hands it out again only for the same `image_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSource {
    pub image_url: String,
    pub sums_url: String,
}

impl DownloadSource {
    /// Debian 13 genericcloud (amd64) from cloud.debian.org.
    pub fn debian_genericcloud() -> DownloadSource {
        DownloadSource::with_sums_beside(DEBIAN_GENERICCLOUD_URL)
    }

    /// An image whose `SHA512SUMS` sits in the same directory, as on Debian's site and mirrors.
    pub fn with_sums_beside(image_url: &str) -> DownloadSource {
        let dir = match image_url.rfind('/') {
            Some(slash) => &image_url[..=slash],
            None => "",
        };
        DownloadSource {
            image_url: image_url.to_owned(),
            sums_url: format!("{dir}{SUMS_FILE}"),
        }
    }

    /// The image's file name (the last segment of its URL), which is its name in the cache.
    pub fn file_name(&self) -> Result<&str, CacheError> {
        let url = &self.image_url;
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let name = path.rsplit('/').next().unwrap_or(path);
        check_name(name).map_err(|reason| CacheError::InvalidUrl {
            url: url.clone(),
            reason: format!("its last segment is not a usable image file name: {reason}"),
        })?;
        Ok(name)
    }
}

/// What a URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Http,
    File(Utf8PathBuf),
}

/// Classify a URL: http(s), or a local file given as `file://` URL or plain path.
pub(crate) fn locate(url: &str) -> Result<Location, CacheError> {
    let invalid = |reason: &str| CacheError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Location::Http);
    }
    if lower.starts_with("file://") {
        let rest = &url["file://".len()..];
        // `file:///p` and `file://localhost/p` are the two forms RFC 8089 allows for local files.
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err(invalid(
                "a file URL must name an absolute path: file:///path/to/file",
            ));
        }
        if path.contains('%') {
            return Err(invalid(
                "percent-escapes in file URLs are not supported: give a plain path",
            ));
        }
        return Ok(Location::File(path.into()));
    }
    if url.contains("://") {
        return Err(invalid(
            "only http://, https://, file:// URLs and plain paths are supported",
        ));
    }
    if url.is_empty() {
        return Err(invalid("the URL is empty"));
    }
    Ok(Location::File(url.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_source_is_debian_trixie_genericcloud() {
        let source = DownloadSource::debian_genericcloud();
        assert_eq!(
            source.sums_url,
            "https://cloud.debian.org/images/cloud/trixie/latest/SHA512SUMS"
        );
        assert_eq!(source.file_name().unwrap(), crate::GENERICCLOUD);
    }

    #[test]
    fn sums_beside_a_plain_path_or_a_bare_name() {
        assert_eq!(
            DownloadSource::with_sums_beside("/srv/m/x.qcow2").sums_url,
            "/srv/m/SHA512SUMS"
        );
        assert_eq!(
            DownloadSource::with_sums_beside("x.qcow2").sums_url,
            "SHA512SUMS"
        );
        assert_eq!(
            DownloadSource::with_sums_beside("file:///m/x.qcow2").sums_url,
            "file:///m/SHA512SUMS"
        );
    }

    #[test]
    fn file_name_ignores_query_and_fragment() {
        let source = DownloadSource::with_sums_beside("http://127.0.0.1:8080/d/img.qcow2?x=1#frag");
        assert_eq!(source.file_name().unwrap(), "img.qcow2");
    }

    #[test]
    fn unusable_file_names_are_rejected() {
        for url in [
            "http://h/dir/",
            "http://h/d/.hidden",
            "http://h/d/a%20b",
            "http://h/SHA512SUMS",
        ] {
            let err = DownloadSource::with_sums_beside(url)
                .file_name()
                .unwrap_err();
            assert!(matches!(err, CacheError::InvalidUrl { .. }), "{url}: {err}");
        }
    }

    #[test]
    fn locations() {
        assert_eq!(locate("https://h/x").unwrap(), Location::Http);
        assert_eq!(locate("HTTP://h/x").unwrap(), Location::Http);
        assert_eq!(
            locate("file:///m/x").unwrap(),
            Location::File("/m/x".into())
        );
        assert_eq!(
            locate("file://localhost/m/x").unwrap(),
            Location::File("/m/x".into())
        );
        assert_eq!(locate("m/x").unwrap(), Location::File("m/x".into()));
        for bad in [
            "file://host/x",
            "file://rel",
            "ftp://h/x",
            "",
            "file:///a%20b",
        ] {
            assert!(locate(bad).is_err(), "accepted {bad:?}");
        }
    }
}
