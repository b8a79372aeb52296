//! Chunk placeholders in output paths and names: `${tag}`, `${tag[N]}` (negative N
//! counts from the end), `${chunk_id}` and the chunk's record-field keys, as fluentd's
//! `extract_placeholders` expands them for out_file, secondary_file and friends.

/// `${tag}`, `${tag[N]}` (negative N counts from the end), `${chunk_id}` and the
/// chunk's record-field keys (`${name}`, `${$.a.b}`).
pub fn expand(s: &str, tag: &str, chunk_id: &str, vars: &[(String, String)]) -> String {
    let parts: Vec<&str> = tag.split('.').collect();
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let name = &after[..j];
        match name {
            "tag" => out.push_str(tag),
            "chunk_id" => out.push_str(chunk_id),
            v if vars.iter().any(|(k, _)| k == v) => {
                if let Some((_, val)) = vars.iter().find(|(k, _)| k == v) {
                    out.push_str(val);
                }
            }
            _ => {
                match name.strip_prefix("tag[").and_then(|x| x.strip_suffix(']')).and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) => {
                        let len = parts.len() as i64;
                        let k = if n < 0 { len + n } else { n };
                        if (0..len).contains(&k) {
                            out.push_str(parts[k as usize]);
                        }
                    }
                    None => {
                        out.push_str("${");
                        out.push_str(name);
                        out.push('}');
                    }
                }
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(expand("/d/${tag}/${tag[1]}-${tag[-1]}.${chunk_id}", "a.b.c", "ff", &[]), "/d/a.b.c/b-c.ff");
        assert_eq!(expand("x${unknown}y", "t", "", &[]), "x${unknown}y");
        let vars = [("message".to_string(), "hi".to_string()), ("$.k.ns".to_string(), "prod".to_string())];
        assert_eq!(expand("${message}/${$.k.ns}", "t", "", &vars), "hi/prod");
    }
}
