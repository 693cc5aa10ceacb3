fn main() -> std::process::ExitCode {
    autoprov::cli::main()
}
