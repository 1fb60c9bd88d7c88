//! Criterion benchmarks of the float path: model latency of the fixtures (converted once at
//! start-up) and the frame pre-processing step. `cargo bench --bench inference`.
//! Threads: 1, so figures compare across machines of different core counts.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use kestrel::{Fixture, FIXTURES};
use kestrel_quantize::{convert, ConvertOptions};
use kestrel_runtime::camera::{self, SourceOptions};
use kestrel_runtime::pipeline::preprocess::{Normalize, Preprocessor};
use kestrel_runtime::random::random_inputs;
use kestrel_runtime::tract_core::prelude::DatumType;
use kestrel_runtime::{LoadOptions, Model, TensorSpec};

fn models(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("model");
    group.sample_size(20);
    for name in FIXTURES {
        let fx = Fixture::load(name).unwrap();
        let out = dir.path().join(format!("{name}.nnef.tgz"));
        let options = ConvertOptions {
            input_shapes: vec![fx.input_shape_arg().parse().unwrap()],
            ..ConvertOptions::default()
        };
        convert(&fx.onnx, &out, &options).unwrap();
        let model = Model::load(&out, &LoadOptions { threads: Some(1) }).unwrap();
        let inputs = random_inputs(model.inputs(), 1).unwrap();
        let mut session = model.session().unwrap();
        group.bench_function(*name, |b| b.iter(|| session.run(inputs.clone()).unwrap()));
    }
    group.finish();
}

fn preprocess(c: &mut Criterion) {
    let opts = SourceOptions {
        width: 640,
        height: 480,
        fps: 0.0,
        ..SourceOptions::default()
    };
    let mut source = camera::open("synthetic", &opts).unwrap();
    let spec = TensorSpec {
        name: "x".into(),
        datum_type: DatumType::F32,
        shape: vec![1, 3, 224, 224],
    };
    let mut pre = Preprocessor::new(&spec, Normalize::unit()).unwrap();
    let mut out = vec![0f32; 3 * 224 * 224];
    let frame = source.next_frame().unwrap().unwrap();
    let start = Instant::now();
    pre.run(&frame, &mut out);
    eprintln!("first preprocess (builds tables): {:?}", start.elapsed());
    c.bench_function("preprocess/640x480_to_224x224_nchw", |b| {
        b.iter(|| pre.run(&frame, &mut out))
    });
}

criterion_group!(benches, models, preprocess);
criterion_main!(benches);
