//! Checksummed record framing, shared by the write-ahead log and the customer dictionary.
//!
//! A record is `magic u32 | length u32 | crc32 u32 | payload`, little-endian, where the CRC
//! covers the length and the payload. The magic lets recovery tell a torn tail (nothing valid
//! follows) from damage in the middle (valid records follow): see [`scan_records`].

pub const MAGIC: u32 = 0xCA1E_7A11;
pub const HEADER_LEN: usize = 12;
/// No record is larger; a length above it is damage, not a record.
pub const MAX_RECORD: usize = 256 << 20;

pub fn encode_record(payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(payload);
}

/// Why the record at some offset could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    BadMagic,
    Truncated,
    TooLong(usize),
    Checksum,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::BadMagic => write!(f, "bad record marker"),
            Damage::Truncated => write!(f, "record cut short"),
            Damage::TooLong(n) => write!(f, "impossible record length {n}"),
            Damage::Checksum => write!(f, "checksum mismatch"),
        }
    }
}

/// Reads the record starting at `offset`: its payload and the offset after it.
pub fn read_record(buf: &[u8], offset: usize) -> Result<(&[u8], usize), Damage> {
    let header = buf
        .get(offset..offset + HEADER_LEN)
        .ok_or(Damage::Truncated)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if word(0) != MAGIC {
        return Err(Damage::BadMagic);
    }
    let len = word(4) as usize;
    if len > MAX_RECORD {
        return Err(Damage::TooLong(len));
    }
    let start = offset + HEADER_LEN;
    let payload = buf.get(start..start + len).ok_or(Damage::Truncated)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&(len as u32).to_le_bytes());
    crc.update(payload);
    if crc.finalize() != word(8) {
        return Err(Damage::Checksum);
    }
    Ok((payload, start + len))
}

/// The outcome of reading a whole framed file.
#[derive(Debug)]
pub struct Scanned<'a> {
    pub records: Vec<&'a [u8]>,
    /// Offset just after the last good record.
    pub good_len: usize,
    /// Damage at `good_len`, if the file does not end cleanly there.
    pub damage: Option<Damage>,
    /// How many valid records were found after the damage (0 means a torn tail).
    pub valid_after: u64,
}

/// Reads every record; on damage, looks ahead for valid records to tell a torn tail (safe to
/// cut) from corruption in the middle (must be reported).
pub fn scan_records(buf: &[u8]) -> Scanned<'_> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        match read_record(buf, offset) {
            Ok((payload, next)) => {
                records.push(payload);
                offset = next;
            }
            Err(damage) => {
                let valid_after = count_valid_after(buf, offset + 1);
                return Scanned {
                    records,
                    good_len: offset,
                    damage: Some(damage),
                    valid_after,
                };
            }
        }
    }
    Scanned {
        records,
        good_len: offset,
        damage: None,
        valid_after: 0,
    }
}

fn count_valid_after(buf: &[u8], from: usize) -> u64 {
    let magic = MAGIC.to_le_bytes();
    let mut count = 0;
    let mut i = from;
    while i + HEADER_LEN <= buf.len() {
        if buf[i..i + 4] == magic
            && let Ok((_, next)) = read_record(buf, i)
        {
            count += 1;
            i = next;
            continue;
        }
        i += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode_record(p, &mut out);
        }
        out
    }

    #[test]
    fn round_trip() {
        let buf = file(&[b"one", b"", b"three"]);
        let s = scan_records(&buf);
        assert_eq!(s.records, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(s.good_len, buf.len());
        assert!(s.damage.is_none());
    }

    #[test]
    fn torn_tail_is_told_from_middle_damage() {
        let buf = file(&[b"one", b"two", b"three"]);
        let torn = &buf[..buf.len() - 2];
        let s = scan_records(torn);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.damage, Some(Damage::Truncated));
        assert_eq!(s.valid_after, 0);

        let mut flipped_tail = buf.clone();
        let last = flipped_tail.len() - 1;
        flipped_tail[last] ^= 0x40;
        let s = scan_records(&flipped_tail);
        assert_eq!(
            (s.records.len(), s.damage, s.valid_after),
            (2, Some(Damage::Checksum), 0)
        );

        let mut flipped_middle = buf.clone();
        flipped_middle[HEADER_LEN + 1] ^= 0x40;
        let s = scan_records(&flipped_middle);
        assert_eq!(
            (s.records.len(), s.damage, s.valid_after),
            (0, Some(Damage::Checksum), 2)
        );
    }
}

/// Every readable record, stepping over damaged stretches byte by byte until a valid record
/// starts again. Returns the records and how many bytes were stepped over. Only for repair:
/// normal recovery never skips anything.
pub fn salvage(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut records = Vec::new();
    let mut skipped = 0;
    let mut i = 0;
    while i < buf.len() {
        match read_record(buf, i) {
            Ok((payload, next)) => {
                records.push(payload);
                i = next;
            }
            Err(_) => {
                skipped += 1;
                i += 1;
            }
        }
    }
    (records, skipped)
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the payloads, they read back; and cutting the file anywhere never yields a
        /// record that was not written, nor reports the cut as middle damage.
        #[test]
        fn framing_round_trips_and_cuts_are_torn_tails(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            for p in &payloads {
                encode_record(p, &mut buf);
            }
            let s = scan_records(&buf);
            prop_assert_eq!(s.records.iter().map(|r| r.to_vec()).collect::<Vec<_>>(), payloads.clone());
            let at = cut.index(buf.len() + 1);
            let s = scan_records(&buf[..at]);
            prop_assert!(s.records.len() <= payloads.len());
            for (r, p) in s.records.iter().zip(&payloads) {
                prop_assert_eq!(r.to_vec(), p.clone());
            }
            prop_assert_eq!(s.valid_after, 0);
        }
    }
}
