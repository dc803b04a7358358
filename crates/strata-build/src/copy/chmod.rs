//! `--chmod` values: octal, or chmod(1)'s symbolic form (`u+x,g-w`, `go=u-w`, `+X`).
//!
//! The symbolic form is parsed and applied exactly as BuildKit does: fsutil's copy uses
//! tonistiigi/dchapes-mode (a Go port of BSD's setmode/getmode) with a zero umask. One BSD
//! detail that differs from GNU chmod: `X` only counts after `+`, so `a=rX` gives a
//! directory 0444, not 0555.

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Chmod {
    Octal(u32),
    Symbolic(ModeSet),
}

const IS_UID: u16 = 0o4000;
const IS_GID: u16 = 0o2000;
const IS_TXT: u16 = 0o1000;
const RWXU: u16 = 0o700;
const RWXG: u16 = 0o070;
const RWXO: u16 = 0o007;
const R_ALL: u16 = 0o444;
const W_ALL: u16 = 0o222;
const X_ALL: u16 = 0o111;
const STANDARD: u16 = IS_UID | IS_GID | RWXU | RWXG | RWXO;

const CLEAR: u8 = 1;
const SET: u8 = 2;
const GBITS: u8 = 4;
const OBITS: u8 = 8;
const UBITS: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BitCmd {
    cmd: u8,
    cmd2: u8,
    bits: u16,
}

/// The operations of a symbolic mode, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModeSet {
    cmds: Vec<BitCmd>,
}

impl Chmod {
    /// Parses `s` as BuildKit's dockerfile2llb does: octal first (at most 07777), else
    /// symbolic. The error is the message to show at the instruction.
    pub(crate) fn parse(s: &str) -> Result<Chmod, String> {
        let octal_err = || {
            format!(
                "invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777"
            )
        };
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(s, 8) {
                Ok(m) if m <= 0o7777 => Ok(Chmod::Octal(m)),
                _ => Err(octal_err()),
            };
        }
        // A value that starts like a number but is not octal is reported as one.
        if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            return Err(octal_err());
        }
        ModeSet::parse(s).map(Chmod::Symbolic).ok_or_else(|| {
            format!(
                "invalid chmod parameter: '{s}': not an octal mode (0644) nor a symbolic one \
                 (u+x,g-w, a=rX)"
            )
        })
    }

    /// The mode a copied entry gets, from its own mode (`mode & 0o7777` matters).
    pub(crate) fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(set) => set.apply(mode, is_dir),
        }
    }

    pub(crate) fn octal(&self) -> Option<u32> {
        match self {
            Chmod::Octal(m) => Some(*m),
            Chmod::Symbolic(_) => None,
        }
    }
}

impl ModeSet {
    /// setmode(3) with a zero umask; `None` on a syntax error.
    fn parse(s: &str) -> Option<ModeSet> {
        let s = s.as_bytes();
        let mut m = ModeSet { cmds: Vec::new() };
        if s.is_empty() {
            return None;
        }
        let mask: u16 = !0;
        let mut i = 0;
        let mut equal_done = false;
        loop {
            let mut who: u16 = 0;
            loop {
                match s.get(i)? {
                    b'a' => who |= STANDARD,
                    b'u' => who |= IS_UID | RWXU,
                    b'g' => who |= IS_GID | RWXG,
                    b'o' => who |= RWXO,
                    _ => break,
                }
                i += 1;
            }
            'op: loop {
                let op = *s.get(i)?;
                i += 1;
                match op {
                    b'+' | b'-' => {}
                    b'=' => equal_done = false,
                    _ => return None,
                }
                who &= !IS_TXT;
                let (mut perm, mut perm_x) = (0u16, 0u16);
                loop {
                    let b = s.get(i).copied().unwrap_or(0);
                    match b {
                        b'r' => perm |= R_ALL,
                        b's' => {
                            // Only "other" bits: set-id does not apply.
                            if who == 0 || who & !RWXO != 0 {
                                perm |= IS_UID | IS_GID;
                            }
                        }
                        b't' => {
                            if who == 0 || who & !RWXO != 0 {
                                who |= IS_TXT;
                                perm |= IS_TXT;
                            }
                        }
                        b'w' => perm |= W_ALL,
                        b'X' => {
                            if op == b'+' {
                                perm_x = X_ALL;
                            }
                        }
                        b'x' => perm |= X_ALL,
                        b'u' | b'g' | b'o' => {
                            // Flush the partial mode, then copy bits between classes.
                            if perm != 0 {
                                m.add(op, who, perm, mask);
                                perm = 0;
                            }
                            if op == b'=' {
                                equal_done = true;
                            }
                            if perm_x != 0 {
                                m.add(b'X', who, perm_x, mask);
                                perm_x = 0;
                            }
                            m.add(b, who, u16::from(op), mask);
                        }
                        _ => {
                            if perm != 0 || (op == b'=' && !equal_done) {
                                if op == b'=' {
                                    equal_done = true;
                                }
                                m.add(op, who, perm, mask);
                            }
                            if perm_x != 0 {
                                m.add(b'X', who, perm_x, mask);
                            }
                            break;
                        }
                    }
                    i += 1;
                }
                if i >= s.len() {
                    m.compress();
                    return Some(m);
                }
                if s[i] != b',' {
                    continue 'op;
                }
                i += 1;
                break;
            }
        }
    }

    fn add(&mut self, op: u8, who: u16, oparg: u16, mask: u16) {
        let mut c = BitCmd { cmd: op, cmd2: 0, bits: 0 };
        match op {
            b'=' | b'+' | b'-' | b'X' => {
                let mut op = op;
                if op == b'=' {
                    let bits = if who != 0 { who } else { STANDARD };
                    self.cmds.push(BitCmd { cmd: b'-', cmd2: 0, bits });
                    op = b'+';
                }
                c.cmd = op;
                c.bits = if who != 0 { who & oparg } else { mask & oparg };
            }
            _ => {
                // b'u' | b'g' | b'o': copy one class's bits to others.
                if who != 0 {
                    if who & 0o400 != 0 {
                        c.cmd2 |= UBITS;
                    }
                    if who & 0o040 != 0 {
                        c.cmd2 |= GBITS;
                    }
                    if who & 0o004 != 0 {
                        c.cmd2 |= OBITS;
                    }
                    c.bits = !0;
                } else {
                    c.cmd2 = UBITS | GBITS | OBITS;
                    c.bits = mask;
                }
                c.cmd2 |= match oparg as u8 {
                    b'+' => SET,
                    b'-' => CLEAR,
                    _ => SET | CLEAR,
                };
            }
        }
        self.cmds.push(c);
    }

    /// Merges runs of `+`, `-` and `X` into at most one of each (setmode's compress_mode).
    fn compress(&mut self) {
        let cmds = std::mem::take(&mut self.cmds);
        let mut i = 0;
        while i < cmds.len() {
            let c = cmds[i];
            if !matches!(c.cmd, b'+' | b'-' | b'X') {
                self.cmds.push(c);
                i += 1;
                continue;
            }
            let (mut set, mut clr, mut x) = (0u16, 0u16, 0u16);
            while i < cmds.len() {
                let c = cmds[i];
                match c.cmd {
                    b'-' => {
                        clr |= c.bits;
                        set &= !c.bits;
                        x &= !c.bits;
                    }
                    b'+' => {
                        set |= c.bits;
                        clr &= !c.bits;
                        x &= !c.bits;
                    }
                    b'X' => x |= c.bits & !set,
                    _ => break,
                }
                i += 1;
            }
            for (cmd, bits) in [(b'-', clr), (b'+', set), (b'X', x)] {
                if bits != 0 {
                    self.cmds.push(BitCmd { cmd, cmd2: 0, bits });
                }
            }
        }
    }

    fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let old = (mode & 0o7777) as u16;
        let mut new = old;
        let common = |new: &mut u16, c: &BitCmd, value: u16| {
            if c.cmd2 & CLEAR != 0 {
                let clr = if c.cmd2 & SET != 0 { RWXO } else { value };
                if c.cmd2 & UBITS != 0 {
                    *new &= !((clr << 6) & c.bits);
                }
                if c.cmd2 & GBITS != 0 {
                    *new &= !((clr << 3) & c.bits);
                }
                if c.cmd2 & OBITS != 0 {
                    *new &= !(clr & c.bits);
                }
            }
            if c.cmd2 & SET != 0 {
                if c.cmd2 & UBITS != 0 {
                    *new |= (value << 6) & c.bits;
                }
                if c.cmd2 & GBITS != 0 {
                    *new |= (value << 3) & c.bits;
                }
                if c.cmd2 & OBITS != 0 {
                    *new |= value & c.bits;
                }
            }
        };
        for c in &self.cmds {
            match c.cmd {
                b'u' => {
                    let v = (new & RWXU) >> 6;
                    common(&mut new, c, v)
                }
                b'g' => {
                    let v = (new & RWXG) >> 3;
                    common(&mut new, c, v)
                }
                b'o' => {
                    let v = new & RWXO;
                    common(&mut new, c, v)
                }
                b'+' => new |= c.bits,
                b'-' => new &= !c.bits,
                b'X' if old & X_ALL != 0 || is_dir => new |= c.bits,
                _ => {}
            }
        }
        (mode & !0o7777) | u32::from(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, is_dir: bool) -> u32 {
        match Chmod::parse(s) {
            Ok(c) => c.apply(mode, is_dir),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn octal_values_and_their_errors() {
        assert_eq!(Chmod::parse("0644"), Ok(Chmod::Octal(0o644)));
        assert_eq!(Chmod::parse("7777"), Ok(Chmod::Octal(0o7777)));
        assert_eq!(Chmod::parse("0"), Ok(Chmod::Octal(0)));
        for bad in ["10000", "64a", "0x1", "9"] {
            let e = Chmod::parse(bad).unwrap_err();
            assert!(e.contains("should be octal string"), "{bad}: {e}");
        }
        for bad in ["", "u", "q+x", "u+x,", "+z", "u+x;g-w"] {
            assert!(Chmod::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    // Expected values from dchapes-mode's own table (mode_test.go) and chmod(1).
    #[test]
    fn symbolic_modes_as_bsd_setmode() {
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("u=rw,g=r,o=r", 0o777, false), 0o644);
        assert_eq!(sym("a+X", 0o666, false), 0o666);
        assert_eq!(sym("a+X", 0o646, true), 0o757);
        assert_eq!(sym("+X", 0o010, false), 0o111);
        assert_eq!(sym("u+X", 0o001, false), 0o101);
        assert_eq!(sym("-X", 0o777, false), 0o777);
        assert_eq!(sym("u+rw,g+r,o-x,o+w", 0o124, true), 0o766);
        assert_eq!(sym("=rw,+X", 0o666, false), 0o666);
        assert_eq!(sym("=rw,+X", 0o766, false), 0o777);
        assert_eq!(sym("u=rwx,go=u-w", 0o000, false), 0o755);
        assert_eq!(sym("go=", 0o777, false), 0o700);
        assert_eq!(sym("g=u", 0o640, false), 0o660);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("+t", 0o755, true), 0o1755);
        assert_eq!(sym("o+s", 0o755, false), 0o755);
        assert_eq!(sym("u+x,g-w", 0o664, false), 0o744);
        // BSD: X only after `+`, so `=rX` does not make directories searchable.
        assert_eq!(sym("a=rX", 0o755, true), 0o444);
        assert_eq!(sym("u=rwX,go=rX", 0o600, true), 0o644);
        // The file type bits pass through.
        assert_eq!(sym("+x", 0o100644, false), 0o100755);
    }
}
