//! `moeplan schema`: the JSON Schema of the native spec formats.
use crate::args::SchemaArgs;
use crate::output::{self, Failure};

pub fn run(a: &SchemaArgs) -> Result<(), Failure> {
    let schema = match a.kind.as_str() {
        "gpu" => moeplan::spec::schema_of::<moeplan::spec::gpu::RawGpu>(),
        "plan" => moeplan::spec::schema_of::<moeplan::spec::plan::RawPlan>(),
        "scenario" => moeplan::spec::schema_of::<moeplan::spec::scenario::RawScenario>(),
        "profile" => moeplan::spec::schema_of::<moeplan::profile::UserProfile>(),
        _ => moeplan::spec::schema_of::<moeplan::spec::model::RawModel>(),
    };
    output::json(&schema);
    Ok(())
}
