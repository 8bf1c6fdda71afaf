# The verbs of tests/lab/lab, one function each: verb_<name> LAB [ARGS].

verb_image() { # LAB
	ensure_deps
	ensure_image
}
