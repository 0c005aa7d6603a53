//! Short, stable content hashes (SHA-256, hex): pod config-hash annotations and notification keys.

use sha2::{Digest, Sha256};

/// The first `bytes` bytes of the SHA-256 of `parts`, in hex. Each part is length-prefixed, so
/// `["ab", "c"]` and `["a", "bc"]` differ.
pub fn short_hex<'a>(parts: impl IntoIterator<Item = &'a str>, bytes: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .take(bytes)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_separated_and_length_is_kept() {
        assert_ne!(short_hex(["ab", "c"], 8), short_hex(["a", "bc"], 8));
        assert_eq!(short_hex(["x"], 8).len(), 16);
        assert_eq!(short_hex(["x"], 16), short_hex(["x"], 16));
    }
}
