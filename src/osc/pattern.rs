//! OSC 1.0 address-pattern matching without regexes and with bounded work.
//!
//! A [`Pattern`] is compiled once from text such as `/cue/*/start` or
//! `/convoy/{play,stop}` and then matched against many literal addresses.
//! Matching is per `/`-separated segment (wildcards never cross a `/`) and
//! supports `?`, `*`, `[abc]`, `[a-z]`, `[!a-c]` and `{foo,bar}`. Patterns are
//! capped at [`MAX_PATTERN_LEN`] bytes and matched by simulating the set of
//! reachable text positions token by token (an NFA walk), so the cost is at
//! most O(pattern length × address length) whatever the input: there is no
//! backtracking to blow up. The OSC 1.1 `//` descendant wildcard is not
//! supported and is rejected at compile time.

use std::fmt;

/// Longest accepted pattern in bytes.
pub const MAX_PATTERN_LEN: usize = 256;
/// Longest address matched; longer addresses never match.
pub const MAX_ADDRESS_LEN: usize = 1024;

/// Why a pattern failed to compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Longer than [`MAX_PATTERN_LEN`].
    #[error("pattern is {len} bytes, limit {max}")]
    TooLong {
        /// Pattern length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Does not begin with `/`.
    #[error("pattern must start with '/'")]
    NoLeadingSlash,
    /// Contains `//` (OSC 1.1 path traversal), unsupported.
    #[error("'//' path traversal is not supported (at byte {at})")]
    DoubleSlash {
        /// Byte offset.
        at: usize,
    },
    /// A byte that may not appear in an OSC address.
    #[error("invalid character {ch:?} at byte {at}")]
    InvalidChar {
        /// The character.
        ch: char,
        /// Byte offset.
        at: usize,
    },
    /// `[` or `{` without its closing bracket in the same segment.
    #[error("unclosed '{open}' starting at byte {at}")]
    Unclosed {
        /// `[` or `{`.
        open: char,
        /// Byte offset.
        at: usize,
    },
    /// Stray `]`, `}` or `,`, or a nested bracket.
    #[error("unexpected {ch:?} at byte {at}")]
    Unexpected {
        /// The character.
        ch: char,
        /// Byte offset.
        at: usize,
    },
    /// `[]` or `[!]`.
    #[error("empty character class at byte {at}")]
    EmptyClass {
        /// Byte offset.
        at: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Lit(Vec<u8>),
    AnyOne,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(u8, u8)>,
    },
    Alt(Vec<Vec<u8>>),
}

impl Token {
    fn class_matches(negated: bool, ranges: &[(u8, u8)], c: u8) -> bool {
        ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated
    }
}

/// A compiled OSC address pattern.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    segments: Vec<Vec<Token>>,
    literal: bool,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// True when `s` contains any OSC pattern metacharacter.
pub fn has_wildcards(s: &str) -> bool {
    s.bytes().any(|c| b"*?[]{}".contains(&c))
}

fn valid_address_byte(c: u8) -> bool {
    // Printable ASCII except space and '#'; ',' is only meaningful in braces.
    c.is_ascii_graphic() && c != b'#'
}

impl Pattern {
    /// Compiles `pattern`.
    pub fn compile(pattern: &str) -> Result<Self, PatternError> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong {
                len: pattern.len(),
                max: MAX_PATTERN_LEN,
            });
        }
        let b = pattern.as_bytes();
        if b.first() != Some(&b'/') {
            return Err(PatternError::NoLeadingSlash);
        }
        let mut segments = Vec::new();
        let mut start = 1;
        loop {
            let end = b[start..]
                .iter()
                .position(|&c| c == b'/')
                .map_or(b.len(), |i| start + i);
            if end == start && end < b.len() {
                return Err(PatternError::DoubleSlash { at: start - 1 });
            }
            segments.push(compile_segment(b, start, end)?);
            if end == b.len() {
                break;
            }
            start = end + 1;
        }
        let literal = segments
            .iter()
            .all(|s| s.iter().all(|t| matches!(t, Token::Lit(_))));
        Ok(Self {
            source: pattern.to_string(),
            segments,
            literal,
        })
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern has no wildcards (matches exactly one address).
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Number of `/`-separated segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// True when `address` (a literal OSC address) matches this pattern.
    pub fn matches(&self, address: &str) -> bool {
        if address.len() > MAX_ADDRESS_LEN {
            return false;
        }
        if self.literal {
            return address == self.source;
        }
        let Some(rest) = address.strip_prefix('/') else {
            return false;
        };
        let mut parts = rest.split('/');
        let mut reach = Vec::new();
        let mut next = Vec::new();
        for seg in &self.segments {
            let Some(text) = parts.next() else {
                return false;
            };
            if !match_segment(seg, text.as_bytes(), &mut reach, &mut next) {
                return false;
            }
        }
        parts.next().is_none()
    }
}

fn compile_segment(b: &[u8], start: usize, end: usize) -> Result<Vec<Token>, PatternError> {
    let mut tokens = Vec::new();
    let mut lit = Vec::new();
    let flush = |lit: &mut Vec<u8>, tokens: &mut Vec<Token>| {
        if !lit.is_empty() {
            tokens.push(Token::Lit(std::mem::take(lit)));
        }
    };
    let mut i = start;
    while i < end {
        let c = b[i];
        match c {
            b'?' => {
                flush(&mut lit, &mut tokens);
                tokens.push(Token::AnyOne);
                i += 1;
            }
            b'*' => {
                flush(&mut lit, &mut tokens);
                // Consecutive stars are equivalent to one.
                if tokens.last() != Some(&Token::Star) {
                    tokens.push(Token::Star);
                }
                i += 1;
            }
            b'[' => {
                flush(&mut lit, &mut tokens);
                let close = b[i + 1..end]
                    .iter()
                    .position(|&c| c == b']')
                    .map(|p| i + 1 + p)
                    .ok_or(PatternError::Unclosed { open: '[', at: i })?;
                tokens.push(compile_class(b, i, close)?);
                i = close + 1;
            }
            b'{' => {
                flush(&mut lit, &mut tokens);
                let close = b[i + 1..end]
                    .iter()
                    .position(|&c| c == b'}')
                    .map(|p| i + 1 + p)
                    .ok_or(PatternError::Unclosed { open: '{', at: i })?;
                let mut alts = Vec::new();
                for alt in b[i + 1..close].split(|&c| c == b',') {
                    if let Some(p) = alt
                        .iter()
                        .position(|&c| !valid_address_byte(c) || b"*?[]{".contains(&c))
                    {
                        let at = alt.as_ptr() as usize - b.as_ptr() as usize + p;
                        return Err(PatternError::Unexpected {
                            ch: char::from(alt[p]),
                            at,
                        });
                    }
                    if !alts.iter().any(|a: &Vec<u8>| a == alt) {
                        alts.push(alt.to_vec());
                    }
                }
                tokens.push(Token::Alt(alts));
                i = close + 1;
            }
            b']' | b'}' | b',' => {
                return Err(PatternError::Unexpected {
                    ch: char::from(c),
                    at: i,
                })
            }
            _ if valid_address_byte(c) => {
                lit.push(c);
                i += 1;
            }
            _ => {
                return Err(PatternError::InvalidChar {
                    ch: char::from(c),
                    at: i,
                })
            }
        }
    }
    flush(&mut lit, &mut tokens);
    Ok(tokens)
}

/// Compiles `b[open] == '['` .. `b[close] == ']'`.
fn compile_class(b: &[u8], open: usize, close: usize) -> Result<Token, PatternError> {
    let mut body = &b[open + 1..close];
    let negated = body.first() == Some(&b'!');
    if negated {
        body = &body[1..];
    }
    if body.is_empty() {
        return Err(PatternError::EmptyClass { at: open });
    }
    let mut ranges = Vec::new();
    let mut j = 0;
    while j < body.len() {
        let c = body[j];
        if !valid_address_byte(c) || c == b'[' || c == b'{' || c == b'}' {
            return Err(PatternError::Unexpected {
                ch: char::from(c),
                at: open + 1 + usize::from(negated) + j,
            });
        }
        if j + 2 < body.len() && body[j + 1] == b'-' {
            let hi = body[j + 2];
            ranges.push((c.min(hi), c.max(hi)));
            j += 3;
        } else {
            // Includes a '-' at the start or the end, taken literally.
            ranges.push((c, c));
            j += 1;
        }
    }
    Ok(Token::Class { negated, ranges })
}

/// NFA walk: `reach[p]` = the tokens so far can consume exactly `text[..p]`.
fn match_segment(
    tokens: &[Token],
    text: &[u8],
    reach: &mut Vec<bool>,
    next: &mut Vec<bool>,
) -> bool {
    let n = text.len();
    reach.clear();
    reach.resize(n + 1, false);
    reach[0] = true;
    for tok in tokens {
        next.clear();
        next.resize(n + 1, false);
        let mut any = false;
        match tok {
            Token::Star => {
                if let Some(first) = reach.iter().position(|&r| r) {
                    for x in &mut next[first..] {
                        *x = true;
                    }
                    any = true;
                }
            }
            _ => {
                for p in 0..=n {
                    if !reach[p] {
                        continue;
                    }
                    match tok {
                        Token::Lit(s) => {
                            if text[p..].starts_with(s) {
                                next[p + s.len()] = true;
                                any = true;
                            }
                        }
                        Token::AnyOne => {
                            if p < n {
                                next[p + 1] = true;
                                any = true;
                            }
                        }
                        Token::Class { negated, ranges } => {
                            if p < n && Token::class_matches(*negated, ranges, text[p]) {
                                next[p + 1] = true;
                                any = true;
                            }
                        }
                        Token::Alt(alts) => {
                            for a in alts {
                                if text[p..].starts_with(a) {
                                    next[p + a.len()] = true;
                                    any = true;
                                }
                            }
                        }
                        Token::Star => {}
                    }
                }
            }
        }
        if !any {
            return false;
        }
        std::mem::swap(reach, next);
    }
    reach[n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, a: &str) -> bool {
        Pattern::compile(p).unwrap().matches(a)
    }

    #[test]
    fn spec_examples() {
        // '?' matches any single character.
        assert!(m("/a?c", "/abc"));
        assert!(!m("/a?c", "/ac"));
        assert!(!m("/a?c", "/abbc"));
        // '*' matches zero or more characters, never '/'.
        assert!(m("/cue/*/start", "/cue/12/start"));
        assert!(m("/cue/*/start", "/cue//start")); // zero characters
        assert!(!m("/cue/*/start", "/cue/1/2/start"));
        assert!(m("/*", "/go"));
        assert!(m("/*", "/"));
        assert!(!m("/*", "/go/now"));
        assert!(m("/a*", "/a"));
        assert!(m("/*a*b*", "/xxaxxbxx"));
        assert!(!m("/*a*b*", "/xxbxxaxx"));
        // Character classes and ranges.
        assert!(m("/[abc]", "/b"));
        assert!(!m("/[abc]", "/d"));
        assert!(m("/ch[0-9]", "/ch7"));
        assert!(!m("/ch[0-9]", "/chx"));
        assert!(m("/[!a-c]x", "/dx"));
        assert!(!m("/[!a-c]x", "/bx"));
        assert!(m("/[a-]", "/-"));
        assert!(m("/[-a]", "/-"));
        assert!(m("/[a-cx-z]", "/y"));
        // Alternatives.
        assert!(m("/convoy/{play,stop}", "/convoy/play"));
        assert!(m("/convoy/{play,stop}", "/convoy/stop"));
        assert!(!m("/convoy/{play,stop}", "/convoy/pause"));
        assert!(m("/{a,ab}c", "/abc"));
        assert!(m("/{a,ab}c", "/ac"));
        assert!(m("/x{,y}", "/x"));
        // Combinations across segments.
        assert!(m("/convoy/*/l?ad", "/convoy/show/load"));
        assert!(m("/[a-z]*/{1,2,3}/*", "/mixer/2/fader"));
        assert!(!m("/[a-z]*/{1,2,3}/*", "/Mixer/2/fader"));
    }

    #[test]
    fn literals_and_segment_counts() {
        let p = Pattern::compile("/convoy/play").unwrap();
        assert!(p.is_literal());
        assert!(p.matches("/convoy/play"));
        assert!(!p.matches("/convoy/play/"));
        assert!(!p.matches("/convoy"));
        let q = Pattern::compile("/convoy/*").unwrap();
        assert!(!q.is_literal());
        assert_eq!(q.segment_count(), 2);
        assert!(!q.matches("convoy/play"));
        assert!(!q.matches("/convoy"));
        assert!(q.matches("/convoy/"));
    }

    #[test]
    fn compile_errors() {
        use PatternError::*;
        assert_eq!(Pattern::compile("x"), Err(NoLeadingSlash));
        assert_eq!(Pattern::compile(""), Err(NoLeadingSlash));
        assert!(matches!(
            Pattern::compile("/a//b"),
            Err(DoubleSlash { at: 2 })
        ));
        assert!(matches!(
            Pattern::compile("/[ab"),
            Err(Unclosed { open: '[', .. })
        ));
        assert!(matches!(
            Pattern::compile("/[a/b]"),
            Err(Unclosed { open: '[', .. })
        ));
        assert!(matches!(
            Pattern::compile("/{a,b"),
            Err(Unclosed { open: '{', .. })
        ));
        assert!(matches!(
            Pattern::compile("/{a,{b}}"),
            Err(Unexpected { .. })
        ));
        assert!(matches!(
            Pattern::compile("/a]"),
            Err(Unexpected { ch: ']', .. })
        ));
        assert!(matches!(
            Pattern::compile("/a,b"),
            Err(Unexpected { ch: ',', .. })
        ));
        assert!(matches!(Pattern::compile("/[]"), Err(EmptyClass { .. })));
        assert!(matches!(Pattern::compile("/[!]"), Err(EmptyClass { .. })));
        assert!(matches!(
            Pattern::compile("/a b"),
            Err(InvalidChar { ch: ' ', .. })
        ));
        assert!(matches!(Pattern::compile("/a#"), Err(InvalidChar { .. })));
        assert!(matches!(Pattern::compile("/é"), Err(InvalidChar { .. })));
        let long = format!("/{}", "a".repeat(MAX_PATTERN_LEN));
        assert!(matches!(Pattern::compile(&long), Err(TooLong { .. })));
    }

    #[test]
    fn hostile_patterns_finish() {
        // Classic exponential-backtracking shapes; bounded by the NFA walk.
        let p = Pattern::compile(&format!("/{}b", "*a".repeat(100))).unwrap();
        let text = format!("/{}", "a".repeat(1000));
        assert!(!p.matches(&text));
        let p = Pattern::compile(&format!("/{}", "{a,aa,aaa}".repeat(23))).unwrap();
        assert!(!p.matches(&format!("/{}c", "a".repeat(1000))));
        assert!(p.matches(&format!("/{}", "a".repeat(40))));
        let too_long = format!("/{}", "a".repeat(MAX_ADDRESS_LEN));
        assert!(!Pattern::compile("/*").unwrap().matches(&too_long));
    }

    /// Cross-check against a naive recursive matcher on small random inputs.
    #[test]
    fn agrees_with_reference_matcher() {
        fn naive(p: &[u8], t: &[u8]) -> bool {
            match p.first() {
                None => t.is_empty(),
                Some(b'*') => (0..=t.len()).any(|k| naive(&p[1..], &t[k..])),
                Some(b'?') => !t.is_empty() && naive(&p[1..], &t[1..]),
                Some(&c) => t.first() == Some(&c) && naive(&p[1..], &t[1..]),
            }
        }
        let mut x: u64 = 12345;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let plen = rnd(7) as usize;
            let tlen = rnd(8) as usize;
            let pat: Vec<u8> = (0..plen).map(|_| b"ab*?"[rnd(4) as usize]).collect();
            let txt: Vec<u8> = (0..tlen).map(|_| b"ab"[rnd(2) as usize]).collect();
            let ps = format!("/{}", String::from_utf8(pat.clone()).unwrap());
            let ts = format!("/{}", String::from_utf8(txt.clone()).unwrap());
            assert_eq!(m(&ps, &ts), naive(&pat, &txt), "{ps} vs {ts}");
        }
    }
}
