//! A small reader of the kernel's BTF (/sys/kernel/btf/vmlinux): struct member offsets, enum
//! values and function names. Rust eBPF has no compiler-made CO-RE relocations, so zc-trace
//! resolves the few kernel-internal fields its programs read here, at start-up, and passes the
//! offsets to the programs. A field that cannot be resolved makes its site "not observable".
//!
//! Why a reader of its own (measured on the 6.18 host, 5.4 MB of vmlinux BTF, 2026-12-07):
//! aya-obj 0.2.1, already in the tree, parses BTF but keeps type lookup by id and type names
//! crate-private, so no member offset can be read through it. btfparse 1.3 (Apache-2.0) keeps
//! every type in a map with owned names: 60 MiB more peak memory and 280 ms, against 31 MiB
//! and 50 ms here. btf-rs 2.0 serves (1 MiB and 5 ms with its mmap backend) but is
//! LGPL-2.1-or-later, and zc-trace ships as one static MIT OR Apache-2.0 binary: taking it is
//! a licensing decision for the project, not a refactoring.

use std::collections::HashMap;

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;
const KIND_FUNC: u32 = 12;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// Size for INT/STRUCT/UNION/ENUM; referenced type for modifiers and typedefs.
    size_or_type: u32,
    members: Vec<Member>,
    enum_values: Vec<(u32, i64)>,
    /// FUNC_PROTO: where its parameter count and types start in `KernelBtf::proto_params`.
    params_at: u32,
}

/// Parsed kernel BTF.
pub struct KernelBtf {
    strings: Vec<u8>,
    /// Index = type id; 0 is void.
    types: Vec<Type>,
    by_name: HashMap<String, Vec<u32>>,
    /// Every FUNC_PROTO's parameters, flat: a count, then that many type ids (one shared
    /// vector: a vector per prototype would cost megabytes for ~70,000 of them).
    proto_params: Vec<u32>,
}

/// What a function parameter or return value is, as far as reading it from a probe's
/// context is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Void,
    Ptr,
    /// An integer or enum of that many bytes.
    Int(u32),
    /// A struct or union passed by value, or anything else a probe does not read.
    Other,
}

/// A function's prototype from BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuncProto {
    pub params: Vec<Slot>,
    pub ret: Slot,
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Void => f.write_str("void"),
            Slot::Ptr => f.write_str("ptr"),
            Slot::Int(n) => write!(f, "int{}", n * 8),
            Slot::Other => f.write_str("other"),
        }
    }
}

impl std::fmt::Display for FuncProto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<String> = self.params.iter().map(Slot::to_string).collect();
        write!(f, "({}) -> {}", params.join(", "), self.ret)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// Byte offset from the start of the struct.
    pub offset: u32,
    /// Size in bytes of the field's (resolved) type.
    pub size: u32,
}

impl KernelBtf {
    pub fn from_sys_fs() -> Result<Self, String> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, String> {
        let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let u32_at = |o: usize| {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        if u16_at(0) != Some(MAGIC) {
            return Err("not little-endian BTF (bad magic)".into());
        }
        let hdr_len = u32_at(4).ok_or("truncated header")? as usize;
        let type_off = u32_at(8).ok_or("truncated header")? as usize;
        let type_len = u32_at(12).ok_or("truncated header")? as usize;
        let str_off = u32_at(16).ok_or("truncated header")? as usize;
        let str_len = u32_at(20).ok_or("truncated header")? as usize;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or("string section out of bounds")?
            .to_vec();
        let start = hdr_len + type_off;
        let end = start + type_len;
        if data.len() < end {
            return Err("type section out of bounds".into());
        }
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            size_or_type: 0,
            members: vec![],
            enum_values: vec![],
            params_at: 0,
        }];
        let mut proto_params = Vec::new();
        let mut o = start;
        let word = |o: usize| u32_at(o).ok_or_else(|| format!("truncated type at {o}"));
        while o < end {
            let name = word(o)?;
            let info = word(o + 4)?;
            let size_or_type = word(o + 8)?;
            o += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut t = Type {
                name,
                kind,
                size_or_type,
                members: vec![],
                enum_values: vec![],
                params_at: 0,
            };
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => o += 4,
                KIND_ARRAY => o += 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = o + i * 12;
                        let raw = word(m + 8)?;
                        t.members.push(Member {
                            name: word(m)?,
                            type_id: word(m + 4)?,
                            // With kind_flag the top 8 bits hold a bitfield size.
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    o += vlen * 12;
                }
                KIND_ENUM => {
                    for i in 0..vlen {
                        let m = o + i * 8;
                        t.enum_values.push((word(m)?, word(m + 4)? as i32 as i64));
                    }
                    o += vlen * 8;
                }
                KIND_ENUM64 => {
                    for i in 0..vlen {
                        let m = o + i * 12;
                        let v = (word(m + 4)? as u64) | ((word(m + 8)? as u64) << 32);
                        t.enum_values.push((word(m)?, v as i64));
                    }
                    o += vlen * 12;
                }
                KIND_FUNC_PROTO => {
                    t.params_at = proto_params.len() as u32;
                    proto_params.push(vlen as u32);
                    for i in 0..vlen {
                        // (name, type); a trailing type 0 marks a variadic function.
                        proto_params.push(word(o + i * 8 + 4)?);
                    }
                    o += vlen * 8;
                }
                KIND_DATASEC => o += vlen * 12,
                _ => {}
            }
            types.push(t);
        }
        proto_params.shrink_to_fit();
        let mut btf = KernelBtf {
            strings,
            types,
            by_name: HashMap::new(),
            proto_params,
        };
        for id in 1..btf.types.len() {
            let n = btf.str(btf.types[id].name).to_string();
            if !n.is_empty() {
                btf.by_name.entry(n).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    fn str(&self, off: u32) -> &str {
        let s = &self.strings[(off as usize).min(self.strings.len())..];
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn named(&self, name: &str, kinds: &[u32]) -> Option<&Type> {
        self.by_name
            .get(name)?
            .iter()
            .map(|&id| &self.types[id as usize])
            .find(|t| kinds.contains(&t.kind) && (t.kind != KIND_STRUCT || !t.members.is_empty()))
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Offset and size of `struct_name.member`, looking through anonymous unions and structs.
    pub fn field(&self, struct_name: &str, member: &str) -> Option<FieldInfo> {
        let t = self.named(struct_name, &[KIND_STRUCT, KIND_UNION])?;
        self.find_member(t, member, 0)
    }

    fn find_member(&self, t: &Type, member: &str, base_bits: u32) -> Option<FieldInfo> {
        for m in &t.members {
            let name = self.str(m.name);
            let bits = base_bits + m.bit_offset;
            if name == member {
                let resolved = self.resolve(m.type_id)?;
                let size = match resolved.kind {
                    KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => {
                        resolved.size_or_type
                    }
                    _ => 8, // pointers
                };
                return Some(FieldInfo {
                    offset: bits / 8,
                    size,
                });
            }
            if name.is_empty() {
                let inner = self.resolve(m.type_id)?;
                if let Some(f) = self.find_member(inner, member, bits) {
                    return Some(f);
                }
            }
        }
        None
    }

    /// Value of an enumerator (in any enum of that name's kind).
    pub fn enum_value(&self, enumerator: &str) -> Option<i64> {
        self.types
            .iter()
            .filter(|t| t.kind == KIND_ENUM || t.kind == KIND_ENUM64)
            .flat_map(|t| t.enum_values.iter())
            .find(|(n, _)| self.str(*n) == enumerator)
            .map(|(_, v)| *v)
    }

    /// Whether the kernel has a (non-inlined) function of this name.
    pub fn has_function(&self, name: &str) -> bool {
        self.named(name, &[KIND_FUNC]).is_some()
    }

    /// The prototype of function `name`, if the kernel has it.
    pub fn func_proto(&self, name: &str) -> Option<FuncProto> {
        let func = self.named(name, &[KIND_FUNC])?;
        let proto = self.types.get(func.size_or_type as usize)?;
        if proto.kind != KIND_FUNC_PROTO {
            return None;
        }
        let at = proto.params_at as usize;
        let n = *self.proto_params.get(at)? as usize;
        let params = self.proto_params.get(at + 1..at + 1 + n)?;
        Some(FuncProto {
            params: params.iter().map(|&id| self.slot(id)).collect(),
            ret: self.slot(proto.size_or_type),
        })
    }

    fn slot(&self, id: u32) -> Slot {
        if id == 0 {
            return Slot::Void;
        }
        match self.resolve(id) {
            Some(t) if t.kind == KIND_PTR => Slot::Ptr,
            Some(t) if matches!(t.kind, KIND_INT | KIND_ENUM | KIND_ENUM64) => {
                Slot::Int(t.size_or_type)
            }
            _ => Slot::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> Option<KernelBtf> {
        match KernelBtf::from_sys_fs() {
            Ok(b) => Some(b),
            Err(e) => {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "CI kernel has BTF: {e}"
                );
                eprintln!("skipping: no kernel BTF ({e})");
                None
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(KernelBtf::parse(b"not btf at all, definitely").is_err());
        assert!(KernelBtf::parse(&[0x9f, 0xeb, 1, 0]).is_err());
    }

    #[test]
    fn resolves_fields_the_copy_sites_read_on_this_kernel() {
        let Some(btf) = kernel() else { return };
        let iter_type = btf
            .field("iov_iter", "iter_type")
            .expect("iov_iter.iter_type");
        assert_eq!(iter_type.size, 1, "iter_type is a u8");
        let flags = btf.field("msghdr", "msg_flags").expect("msghdr.msg_flags");
        assert_eq!(flags.size, 4);
        assert!(btf.field("msghdr", "msg_iter").is_some());
        // sk_route_caps is a netdev_features_t (u64) member of struct sock.
        assert_eq!(btf.field("sock", "sk_route_caps").map(|f| f.size), Some(8));
        // A member inside an anonymous union (struct page's `mapping`, struct file's f_inode...).
        assert!(btf.field("file", "f_inode").is_some());
        assert!(btf.field("iov_iter", "no_such_member").is_none());
        assert!(btf.field("no_such_struct", "x").is_none());
    }

    #[test]
    fn resolves_enums_and_functions_on_this_kernel() {
        let Some(btf) = kernel() else { return };
        assert!(btf.enum_value("ITER_UBUF").is_some());
        assert_ne!(btf.enum_value("ITER_UBUF"), btf.enum_value("ITER_BVEC"));
        assert!(btf.enum_value("NETIF_F_SG_BIT").is_some());
        assert!(btf.has_function("tcp_sendmsg_locked"));
        // int tcp_sendmsg_locked(struct sock *sk, struct msghdr *msg, size_t size)
        assert_eq!(
            btf.func_proto("tcp_sendmsg_locked"),
            Some(FuncProto {
                params: vec![Slot::Ptr, Slot::Ptr, Slot::Int(8)],
                ret: Slot::Int(4),
            })
        );
        assert_eq!(btf.func_proto("zc_trace_no_such_function"), None);
        assert!(btf.has_function("vfs_read"));
        assert!(!btf.has_function("zc_trace_no_such_function"));
    }
}
