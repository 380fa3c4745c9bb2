//! Just enough of a BTF reader to find struct member offsets and enum
//! values in the running kernel's `/sys/kernel/btf/vmlinux`: the drop
//! tracer reads `struct sk_buff` fields at offsets this kernel says, and
//! names drop reasons as this kernel numbers them.
//!
//! Kept by hand rather than replaced by the `btfparse` crate (Apache-2.0;
//! btf-rs is LGPL and not an option): btfparse 1.3.9 finds the same twelve
//! offsets and 131 drop reasons on this machine's 6.18 vmlinux, but it keeps
//! every type of the blob with owned names in three maps, so parsing took
//! 62.5 MB peak RSS (VmHWM) and 2.1-2.6 s against this reader's 22 MB and
//! 0.3-0.5 s (release builds, same loaded 2-core machine, measured
//! 2026-12-01). The agent's peak RSS is this parse, so that would nearly
//! triple it. btfparse also keeps one type per name (a later `struct` of the
//! same name replaces an earlier one), where this reader looks past forward
//! declarations, and reads no split (module) BTF either.
use std::collections::HashMap;

use anyhow::{Context as _, Result, anyhow, bail};

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name: String,
    type_id: u32,
    /// Bit offset from the start of the enclosing struct.
    bit_offset: u32,
}

#[derive(Clone, Debug)]
enum Type {
    Composite {
        name: String,
        members: Vec<Member>,
    },
    Enum {
        name: String,
        values: Vec<(String, i64)>,
    },
    /// typedef / const / volatile / restrict / type tag: look through.
    Alias(u32),
    Other,
}

/// The parsed types of one BTF blob.
pub(crate) struct Btf {
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn u32(&self, off: usize) -> Result<u32> {
        let b = self
            .data
            .get(off..off + 4)
            .ok_or_else(|| anyhow!("BTF truncated at byte {off}"))?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn string(strings: &[u8], off: u32) -> String {
    let s = strings.get(off as usize..).unwrap_or_default();
    let end = s.iter().position(|b| *b == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

impl Btf {
    /// The running kernel's BTF.
    pub(crate) fn from_sys_fs() -> Result<Self> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).with_context(|| {
            format!("reading {path} failed: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF)")
        })?;
        Self::parse(&data).with_context(|| format!("parsing {path} failed"))
    }

    /// Parses a little-endian BTF blob (header, types, strings).
    pub(crate) fn parse(data: &[u8]) -> Result<Self> {
        let r = Reader { data };
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != BTF_MAGIC {
            bail!("not little-endian BTF");
        }
        let hdr_len = r.u32(4)? as usize;
        let (type_off, type_len) = (r.u32(8)? as usize, r.u32(12)? as usize);
        let (str_off, str_len) = (r.u32(16)? as usize, r.u32(20)? as usize);
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| anyhow!("BTF string section out of range"))?;
        let start = hdr_len + type_off;
        let end = start + type_len;
        if end > data.len() {
            bail!("BTF type section out of range");
        }
        // Type id 0 is `void`.
        let mut types = vec![Type::Other];
        let mut off = start;
        while off < end {
            let name_off = r.u32(off)?;
            let info = r.u32(off + 4)?;
            let size_or_type = r.u32(off + 8)?;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            off += 12;
            let name = string(strings, name_off);
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let raw = r.u32(m + 8)?;
                        members.push(Member {
                            name: string(strings, r.u32(m)?),
                            type_id: r.u32(m + 4)?,
                            // With kind_flag the top byte is a bitfield size.
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    off += vlen * 12;
                    Type::Composite { name, members }
                }
                KIND_ENUM => {
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = off + i * 8;
                        let v = r.u32(m + 4)?;
                        // kind_flag: signed values.
                        let v = if kind_flag {
                            i64::from(v as i32)
                        } else {
                            i64::from(v)
                        };
                        values.push((string(strings, r.u32(m)?), v));
                    }
                    off += vlen * 8;
                    Type::Enum { name, values }
                }
                KIND_ENUM64 => {
                    let mut values = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let v = (u64::from(r.u32(m + 8)?) << 32) | u64::from(r.u32(m + 4)?);
                        values.push((string(strings, r.u32(m)?), v as i64));
                    }
                    off += vlen * 12;
                    Type::Enum { name, values }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias(size_or_type)
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    off += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    off += 12;
                    Type::Other
                }
                KIND_FUNC_PROTO => {
                    off += vlen * 8;
                    Type::Other
                }
                KIND_DATASEC => {
                    off += vlen * 12;
                    Type::Other
                }
                // PTR, FWD, FUNC, FLOAT and unknown kinds without extra data.
                _ => Type::Other,
            };
            types.push(ty);
        }
        let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
        for (id, t) in types.iter().enumerate() {
            if let Type::Composite { name, .. } | Type::Enum { name, .. } = t
                && !name.is_empty()
            {
                by_name.entry(name.clone()).or_default().push(id as u32);
            }
        }
        Ok(Self { types, by_name })
    }

    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            match self.types.get(id as usize)? {
                Type::Alias(next) => id = *next,
                t => return Some(t),
            }
        }
        None
    }

    fn composite(&self, name: &str) -> Result<&[Member]> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .find_map(|id| match &self.types[*id as usize] {
                // A forward declaration has no members: take the definition.
                Type::Composite { members, .. } if !members.is_empty() => Some(members.as_slice()),
                _ => None,
            })
            .ok_or_else(|| anyhow!("BTF has no struct {name}"))
    }

    /// Bit offset of `field` within `members`, looking inside anonymous
    /// structs and unions (where the kernel keeps most sk_buff fields).
    fn find(&self, members: &[Member], field: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        for m in members {
            if m.name == field {
                return Some((m.bit_offset, m.type_id));
            }
            if m.name.is_empty()
                && let Some(Type::Composite { members: inner, .. }) = self.resolve(m.type_id)
                && let Some((off, ty)) = self.find(inner, field, depth + 1)
            {
                return Some((m.bit_offset + off, ty));
            }
        }
        None
    }

    /// Byte offset of a member path, e.g. `("net_device", &["nd_net", "net"])`.
    pub(crate) fn offset(&self, strukt: &str, path: &[&str]) -> Result<u32> {
        let mut members = self.composite(strukt)?;
        let mut bits = 0;
        let mut where_ = strukt.to_string();
        for (i, field) in path.iter().enumerate() {
            let (off, ty) = self
                .find(members, field, 0)
                .ok_or_else(|| anyhow!("BTF: {where_} has no member {field}"))?;
            bits += off;
            where_ = format!("{where_}.{field}");
            if i + 1 < path.len() {
                members = match self.resolve(ty) {
                    Some(Type::Composite { members, .. }) => members,
                    _ => bail!("BTF: {where_} is not a struct"),
                };
            }
        }
        if bits % 8 != 0 {
            bail!("BTF: {strukt}.{} is a bitfield", path.join("."));
        }
        Ok(bits / 8)
    }

    /// The values of an enum, by name.
    pub(crate) fn enum_values(&self, name: &str) -> Result<Vec<(String, i64)>> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .find_map(|id| match &self.types[*id as usize] {
                Type::Enum { values, .. } => Some(values.clone()),
                _ => None,
            })
            .ok_or_else(|| anyhow!("BTF has no enum {name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made BTF blob: `struct inner { int a; }`,
    /// `struct outer { int x; union { struct inner in; }; int y; }`,
    /// `enum color { RED = 1, BLUE = 4 }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0outer\0x\0in\0y\0color\0RED\0BLUE\0".to_vec();
        let s = |name: &str| -> u32 {
            let pos = strings
                .windows(name.len() + 2)
                .position(|w| {
                    w[0] == 0 && &w[1..=name.len()] == name.as_bytes() && w[name.len() + 1] == 0
                })
                .expect("string");
            (pos + 1) as u32
        };
        let mut t: Vec<u32> = Vec::new();
        // 1: int, 4 bytes
        t.extend([s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { int a @0 }
        t.extend([s("inner"), (KIND_STRUCT << 24) | 1, 4, s("a"), 1, 0]);
        // 3: anonymous union { struct inner in @0 }
        t.extend([0, (KIND_UNION << 24) | 1, 4, s("in"), 2, 0]);
        // 4: struct outer { int x @0; <anon union> @32 bits; int y @64 bits }
        t.extend([
            s("outer"),
            (KIND_STRUCT << 24) | 3,
            12,
            s("x"),
            1,
            0,
            0,
            3,
            32,
            s("y"),
            1,
            64,
        ]);
        // 5: enum color
        t.extend([
            s("color"),
            (KIND_ENUM << 24) | 2,
            4,
            s("RED"),
            1,
            s("BLUE"),
            4,
        ]);
        let types: Vec<u8> = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut b = Vec::new();
        b.extend(BTF_MAGIC.to_le_bytes());
        b.extend([1u8, 0]);
        for v in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            b.extend(v.to_le_bytes());
        }
        b.extend(types);
        b.extend(strings);
        b
    }

    #[test]
    fn offsets_through_anonymous_unions_and_nested_structs() {
        let btf = Btf::parse(&blob()).expect("parse");
        assert_eq!(btf.offset("outer", &["x"]).ok(), Some(0));
        assert_eq!(btf.offset("outer", &["in"]).ok(), Some(4));
        assert_eq!(btf.offset("outer", &["in", "a"]).ok(), Some(4));
        assert_eq!(btf.offset("outer", &["y"]).ok(), Some(8));
        assert!(btf.offset("outer", &["z"]).is_err());
        assert!(btf.offset("nope", &["x"]).is_err());
    }

    #[test]
    fn enums() {
        let btf = Btf::parse(&blob()).expect("parse");
        assert_eq!(
            btf.enum_values("color").ok(),
            Some(vec![("RED".to_string(), 1), ("BLUE".to_string(), 4)])
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Btf::parse(b"not btf at all, not at all").is_err());
        let mut b = blob();
        b.truncate(40);
        assert!(Btf::parse(&b).is_err());
    }

    #[test]
    fn the_running_kernel() {
        // Every kernel this probe supports has BTF; reading it needs no root.
        let btf = Btf::from_sys_fs().expect("/sys/kernel/btf/vmlinux");
        assert!(btf.offset("sk_buff", &["dev"]).is_ok());
        assert!(btf.offset("sk_buff", &["network_header"]).is_ok());
        assert!(btf.offset("net_device", &["nd_net", "net"]).is_ok());
        assert!(btf.offset("net", &["ns", "inum"]).is_ok());
        let reasons = btf
            .enum_values("skb_drop_reason")
            .expect("enum skb_drop_reason");
        assert!(
            reasons
                .iter()
                .any(|(n, _)| n == "SKB_DROP_REASON_NO_SOCKET")
        );
    }
}
