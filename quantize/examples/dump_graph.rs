use kestrel_quantize::load::{load_onnx, InputShape};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let s: InputShape = a[2].parse().unwrap();
    let m = load_onnx(std::path::Path::new(&a[1]), &[s])
        .unwrap()
        .into_decluttered()
        .unwrap();
    for n in &m.nodes {
        let ins: Vec<String> = n.inputs.iter().map(|i| format!("{}", i.node)).collect();
        println!(
            "{} {} [{}] {} :: {:?}",
            n.id,
            n.name,
            ins.join(","),
            n.op,
            n.outputs[0].fact.without_value()
        );
        if n.op_is::<tract_onnx::tract_core::ops::einsum::EinSum>()
            || n.op_is::<tract_onnx::tract_core::ops::cnn::Conv>()
        {
            println!("    {:?}", n.op);
        }
    }
}
