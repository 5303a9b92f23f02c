//! A run's id: the last part of its VM's name (`boma-it-askari-0a1b2c3d`), 8 hex digits.

/// A run's id, the last part of its VM's name (`boma-it-askari-0a1b2c3d`): 8 hex digits. A
/// parallel run's parent chooses its children's ids, so that it knows each child's VM by name
/// and can remove it if the child is killed before it cleans up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(u32);

impl RunId {
    /// A fresh id, from the kernel's random UUID (the pid if that cannot be read).
    pub fn random() -> RunId {
        std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .ok()
            .and_then(|uuid| u32::from_str_radix(uuid.get(..8)?, 16).ok())
            .map_or(RunId(std::process::id()), RunId)
    }
}

impl std::fmt::Display for RunId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl std::str::FromStr for RunId {
    type Err = String;

    /// Exactly 8 lowercase hex digits, as [`RunId`]'s `Display` writes them.
    fn from_str(s: &str) -> Result<RunId, String> {
        let hex = s.len() == 8
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        hex.then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .map(RunId)
            .ok_or_else(|| {
                format!("`{s}` is not a run id: write 8 lowercase hex digits, e.g. 0a1b2c3d")
            })
    }
}
