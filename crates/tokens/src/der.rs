//! Just enough DER to take the PKCS#1 `RSAPrivateKey` out of a PKCS#8
//! `PrivateKeyInfo` (RFC 5208): signing keys are stored as PKCS#1, the
//! format Kuma writes, while aws-lc-rs serializes PKCS#8.

/// The `privateKey` OCTET STRING's contents of a PKCS#8 `PrivateKeyInfo`.
pub(crate) fn pkcs1_of_pkcs8(pkcs8: &[u8]) -> Option<&[u8]> {
    let (tag, info, _) = element(pkcs8)?;
    if tag != SEQUENCE {
        return None;
    }
    let (version_tag, _, rest) = element(info)?;
    let (algorithm_tag, _, rest) = element(rest)?;
    let (key_tag, key, _) = element(rest)?;
    (version_tag == INTEGER && algorithm_tag == SEQUENCE && key_tag == OCTET_STRING).then_some(key)
}

const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const SEQUENCE: u8 = 0x30;

/// One element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        assert_eq!(element(&[0x04, 0x02, 1, 2, 9]), Some((0x04, &[1u8, 2][..], &[9u8][..])));
        let long: Vec<u8> = [0x04, 0x81, 0x80].into_iter().chain(std::iter::repeat_n(7, 0x80)).collect();
        assert_eq!(element(&long).map(|(_, body, _)| body.len()), Some(0x80));
        assert_eq!(element(&[0x04, 0x05, 1]), None, "shorter than its length");
        assert_eq!(pkcs1_of_pkcs8(&[0x02, 0x01, 0x00]), None, "not a SEQUENCE");
    }
}
