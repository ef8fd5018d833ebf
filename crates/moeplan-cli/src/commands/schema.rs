//! `moeplan schema`: the JSON Schema of the native spec formats and of
//! every command's `--json` output (`output-<command>`).
use crate::args::SchemaArgs;
use crate::output::{self, Failure};

pub fn run(a: &SchemaArgs) -> Result<(), Failure> {
    let schema = match a.kind.as_str() {
        "gpu" => moeplan::spec::schema_of::<moeplan::spec::gpu::RawGpu>(),
        "plan" => moeplan::spec::schema_of::<moeplan::spec::plan::RawPlan>(),
        "scenario" => moeplan::spec::schema_of::<moeplan::spec::scenario::RawScenario>(),
        "profile" => moeplan::spec::schema_of::<moeplan::profile::UserProfile>(),
        "model" => moeplan::spec::schema_of::<moeplan::spec::model::RawModel>(),
        kind => {
            let command = kind.strip_prefix("output-").unwrap_or(kind);
            let schema = moeplan::output::schema(command).expect("clap lists only known kinds");
            serde_json::to_value(schema).expect("schemas serialise")
        }
    };
    output::json(&schema);
    Ok(())
}

/// Every kind `moeplan schema` accepts: the specs, then `output-` and
/// each of `moeplan::output::COMMANDS` (a test keeps the two lists equal).
pub const KINDS: [&str; 16] = [
    "model",
    "gpu",
    "scenario",
    "plan",
    "profile",
    "output-accuracy",
    "output-audit",
    "output-calibrate",
    "output-catalog",
    "output-dag",
    "output-error",
    "output-estimate",
    "output-launch",
    "output-model",
    "output-plan",
    "output-simulate",
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_output_has_a_kind() {
        let outputs: Vec<String> = super::KINDS
            .iter()
            .filter_map(|k| k.strip_prefix("output-"))
            .map(String::from)
            .collect();
        assert_eq!(outputs, moeplan::output::COMMANDS.map(String::from));
    }
}
