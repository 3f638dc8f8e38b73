//! Which event names a customer has, as one word: what the store keeps beside each customer's
//! events (scan files from format 5 on) and what analyses read to settle a customer without
//! its names.

/// Which event names a customer has, one bit per name index modulo 64: a clear bit proves that
/// no name of that bit is among them. Where the names number at most 64, each bit is one name,
/// and a set bit proves it is there (see [`NameSet::is_exact`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameSet(pub u64);

impl NameSet {
    /// The bit of name index `name`.
    pub fn bit(name: usize) -> u64 {
        1 << (name % 64)
    }

    /// The set of `names` (name indexes of any width).
    pub fn of<N: Copy + Into<usize>>(names: &[N]) -> NameSet {
        NameSet(names.iter().fold(0, |set, &n| set | NameSet::bit(n.into())))
    }

    /// Whether sets over `names` names tell exactly which names are there.
    pub fn is_exact(names: usize) -> bool {
        names <= 64
    }

    /// Whether a name of `bits` may be there (surely, when exact).
    pub fn meets(self, bits: u64) -> bool {
        self.0 & bits != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_64_apart_share_a_bit() {
        assert_eq!(NameSet::of(&[1u16, 65, 2]), NameSet(0b110));
        assert_eq!(NameSet::of(&[0u8, 63]), NameSet(1 | 1 << 63));
        assert!(NameSet::of(&[65u16]).meets(NameSet::bit(1)));
        assert!(!NameSet::of(&[65u16]).meets(NameSet::bit(2)));
        assert!(NameSet::is_exact(64) && !NameSet::is_exact(65));
    }
}
