fn main() {
    for (id, _) in moeplan::catalog::MODELS {
        match moeplan::catalog::model(id).unwrap() {
            Ok(m) => {
                let p = m.params();
                println!("{id:22} total {:>8.2}B active {:>7.2}B weights {:>8.1} GB kv/token {:>8} B  layers {} moe {}", p.total.0/1e9, p.active.0/1e9, p.weight_bytes.0/1e9, m.kv_bytes_per_token().0, m.n_layers(), m.n_moe_layers());
            }
            Err(e) => println!("{id}: ERROR {e}"),
        }
    }
}
