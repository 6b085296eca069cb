//! Field offsets of `struct task_struct` read from the running kernel's BTF.
//!
//! The eBPF programs record the caller's start time (`group_leader->start_boottime`) so hoopd can
//! tell a reused pid from the caller. Rust eBPF has no CO-RE field relocations, so user space
//! reads the offsets from `/sys/kernel/btf/vmlinux` and hands them to the programs in the config
//! map. aya-obj parses BTF but keeps member access crate-private, hence this small reader of the
//! documented format (include/uapi/linux/btf.h): only the parts needed to walk struct members.

use std::collections::HashMap;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read kernel BTF: {0}")]
    Read(#[from] std::io::Error),
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("struct {0} not found in BTF")]
    NoStruct(String),
    #[error("member {0} not found in BTF")]
    NoMember(String),
}

/// Offsets the eBPF programs need, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    pub group_leader: u32,
    pub start_boottime: u32,
}

pub fn task_offsets() -> Result<TaskOffsets, BtfError> {
    let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
    let btf = Btf::parse(&data)?;
    let task = btf.struct_id("task_struct")?;
    Ok(TaskOffsets {
        group_leader: btf.member_offset(task, "group_leader")?,
        start_boottime: btf.member_offset(task, "start_boottime")?,
    })
}

struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

enum Ty {
    Composite { name_off: u32, members: Vec<Member> },
    Other,
}

struct Btf<'a> {
    strings: &'a [u8],
    types: Vec<Ty>, // index = type id - 1
    by_name: HashMap<&'a [u8], u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .ok_or(BtfError::Malformed("truncated"))
}

impl<'a> Btf<'a> {
    fn parse(data: &'a [u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            data.get(hdr_len + off..hdr_len + off + len)
                .ok_or(BtfError::Malformed("section out of range"))
        };
        let (types_raw, strings) = (section(type_off, type_len)?, section(str_off, str_len)?);
        let mut btf = Self {
            strings,
            types: Vec::new(),
            by_name: HashMap::new(),
        };
        let mut pos = 0;
        while pos < types_raw.len() {
            let (ty, len) = parse_type(types_raw, pos)?;
            if let Ty::Composite { name_off, .. } = &ty
                && *name_off != 0
            {
                let id = btf.types.len() as u32 + 1;
                btf.by_name.entry(btf.str_at(*name_off)).or_insert(id);
            }
            btf.types.push(ty);
            pos += len;
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> &'a [u8] {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        &s[..s.iter().position(|b| *b == 0).unwrap_or(s.len())]
    }

    fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.by_name
            .get(name.as_bytes())
            .copied()
            .ok_or_else(|| BtfError::NoStruct(name.into()))
    }

    /// Byte offset of `name` in composite `id`, looking through anonymous structs and unions.
    fn member_offset(&self, id: u32, name: &str) -> Result<u32, BtfError> {
        self.find(id, name.as_bytes(), 0)
            .ok_or_else(|| BtfError::NoMember(name.into()))
    }

    fn find(&self, id: u32, name: &[u8], base_bits: u32) -> Option<u32> {
        let Some(Ty::Composite { members, .. }) = self.types.get(id.checked_sub(1)? as usize)
        else {
            return None;
        };
        for m in members {
            let bits = base_bits + m.bit_offset;
            if m.name_off == 0 {
                if let Some(off) = self.find(m.type_id, name, bits) {
                    return Some(off);
                }
            } else if self.str_at(m.name_off) == name && bits.is_multiple_of(8) {
                return Some(bits / 8);
            }
        }
        None
    }
}

/// One type record at `pos`: the type and its encoded length.
fn parse_type(b: &[u8], pos: usize) -> Result<(Ty, usize), BtfError> {
    let name_off = u32_at(b, pos)?;
    let info = u32_at(b, pos + 4)?;
    let (vlen, kind, kind_flag) = ((info & 0xffff) as usize, (info >> 24) & 0x1f, info >> 31);
    let extra = match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => vlen * 12, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => vlen * 8,           // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        _ => return Err(BtfError::Malformed("unknown BTF kind")),
    };
    let ty = if kind == KIND_STRUCT || kind == KIND_UNION {
        let mut members = Vec::with_capacity(vlen);
        for i in 0..vlen {
            let m = pos + 12 + i * 12;
            let raw = u32_at(b, m + 8)?;
            // with kind_flag the low 24 bits are the offset and the high 8 a bitfield size
            let bit_offset = if kind_flag == 1 {
                raw & 0x00ff_ffff
            } else {
                raw
            };
            members.push(Member {
                name_off: u32_at(b, m)?,
                type_id: u32_at(b, m + 4)?,
                bit_offset,
            });
        }
        Ty::Composite { name_off, members }
    } else {
        Ty::Other
    };
    Ok((ty, 12 + extra))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_task_struct_offsets_of_this_kernel() {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            eprintln!("SKIPPED: no /sys/kernel/btf/vmlinux on this host");
            return;
        }
        let o = super::task_offsets().unwrap();
        // task_struct is several KiB; both fields live well inside it and are pointer-aligned
        assert!(
            o.group_leader > 0 && o.group_leader < 16384 && o.group_leader.is_multiple_of(8),
            "{o:?}"
        );
        assert!(
            o.start_boottime > 0 && o.start_boottime < 16384 && o.start_boottime.is_multiple_of(8),
            "{o:?}"
        );
        assert_ne!(o.group_leader, o.start_boottime);
    }
}
