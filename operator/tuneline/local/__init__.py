"""Running the manifests on this machine: the `tuneline run` steps, their state directory and progress."""

# the CLI's exit codes (its docstring says what each means); a step's StepFailed carries one
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
