//! Check-digit validation that turns regex candidates into detections: Luhn for card numbers,
//! ISO 13616 (length per country + mod 97) for IBANs. Cheap, allocation-free.

/// Luhn check over ASCII digits (other bytes are ignored by the caller's contract: only digits).
pub(super) fn luhn(digits: impl DoubleEndedIterator<Item = u8>) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// IBAN length for a country code, from the SWIFT IBAN registry.
pub(super) fn iban_len(cc: [u8; 2]) -> Option<usize> {
    let n = match &cc {
        b"NO" => 15,
        b"BE" => 16,
        b"MK" | b"SI" => 19,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"MN" | b"XK" => 20,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" | b"VA" => 22,
        b"AE" | b"GI" | b"IL" | b"IQ" | b"OM" | b"SO" | b"TL" => 23,
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"LY" | b"PT" | b"ST" => 25,
        b"IS" | b"TR" => 26,
        b"BI" | b"DJ" | b"FR" | b"GR" | b"IT" | b"MC" | b"MR" | b"SM" => 27,
        b"AL" | b"AZ" | b"BY" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"NI" | b"PL" | b"SV" => 28,
        b"BR" | b"EG" | b"PS" | b"QA" | b"UA" => 29,
        b"JO" | b"KW" | b"MU" | b"YE" => 30,
        b"MT" | b"SC" => 31,
        b"LC" => 32,
        b"RU" => 33,
        b"DK" | b"FI" | b"FK" | b"FO" | b"GL" | b"NL" | b"SD" => 18,
        _ => return None,
    };
    Some(n)
}

/// ISO 7064 mod 97-10 over an IBAN's compact form (uppercase letters and digits): the first four
/// characters move to the end, letters count as 10..35, and the number mod 97 must be 1.
pub(super) fn iban_mod97(compact: &[u8]) -> bool {
    if compact.len() < 5 {
        return false;
    }
    let mut rem = 0u32;
    for &c in compact[4..].iter().chain(&compact[..4]) {
        rem = match c {
            b'0'..=b'9' => (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}
