#[test]
fn fails() { assert_eq!(1 + 1, 3, "deliberate"); }
#[test]
fn passes() {}
