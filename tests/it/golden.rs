//! Golden output: each example spec renders to exactly the files under `tests/golden/<case>/`.
//!
//! To accept a deliberate change, run `STACKGEN_BLESS=1 cargo test --test it golden` and review the
//! diff; blessing is refused when `CI` is set.

use std::fs;

use super::support::{GOLDEN_CASES, blessing, files_under, first_difference, render_to_temp, root};

#[test]
fn rendered_output_matches_golden_files() {
    let bless = blessing();
    for (case, spec) in GOLDEN_CASES {
        let (_tmp, out) = render_to_temp(spec);
        let golden = root().join("tests/golden").join(case);
        if bless {
            if golden.exists() {
                fs::remove_dir_all(&golden).expect("remove old golden");
            }
            for file in files_under(&out) {
                let target = golden.join(&file);
                fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
                fs::copy(out.join(&file), target).expect("copy");
            }
            continue;
        }
        let got = files_under(&out);
        let want = files_under(&golden);
        assert_eq!(
            got, want,
            "{case}: the set of rendered files differs from tests/golden/{case}"
        );
        for file in &got {
            let got_text = fs::read_to_string(out.join(file)).expect("rendered file");
            let want_text = fs::read_to_string(golden.join(file)).expect("golden file");
            assert!(
                got_text == want_text,
                "{case}: {file} differs from tests/golden/{case}/{file} (STACKGEN_BLESS=1 to accept a deliberate change)\n{}",
                first_difference(&want_text, &got_text)
            );
        }
    }
}

/// A platform spec with team files renders the very stack of the one spec that writes it all:
/// `tests/fixtures/teams/single.yaml` and `stack.yaml` with its `teams/` (whose output is also
/// the `teams` golden case).
#[test]
fn team_files_render_the_stack_of_the_equivalent_single_spec() {
    let (_split_dir, split) = render_to_temp("tests/fixtures/teams/stack.yaml");
    let (_single_dir, single) = render_to_temp("tests/fixtures/teams/single.yaml");
    let files = files_under(&split);
    assert_eq!(files, files_under(&single), "the same files");
    assert!(
        files.iter().any(|f| f.contains("payments")),
        "the team file's rule file is rendered: {files:?}"
    );
    for file in &files {
        let split_text = fs::read_to_string(split.join(file)).expect("rendered");
        let single_text = fs::read_to_string(single.join(file)).expect("rendered");
        assert!(
            split_text == single_text,
            "{file} differs between the team files and the single spec\n{}",
            first_difference(&single_text, &split_text)
        );
    }
}
