use clap::Parser;
use tessera::cli::{Cli, Command};
use tessera::config::Settings;
use tessera::startup::Application;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tessera::telemetry::init("info");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("tessera: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        command => tessera::cli::run(&settings, command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tessera: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings)?;
    app.run_until_stopped().await?;
    Ok(())
}
