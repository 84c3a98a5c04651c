//! `cairn acl …`: bootstrap the ACL system, and manage policies and tokens (with a management
//! token in `--token`). Answers are printed as JSON: they are documents, and a secret is shown
//! only once, so it should be easy to capture.

use cairn_http::client::{ClientError, Route};
use cairn_http::wire::{PolicyBody, RuleBody, TokenRequestBody};
use cairn_node::acl::Access;
use clap::{Args, Subcommand};

use super::{ClientArgs, Outcome, connect, failure};

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Turn ACLs on and create the management token (once per cluster). Keep its secret.
    Bootstrap(ClientArgs),
    /// Manage policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Manage tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    List(ClientArgs),
    /// Create a policy.
    Create(PolicyArgs),
    /// Replace a policy's rules.
    Update(PolicyArgs),
    Delete {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// The policy's name (`anonymous` applies to requests without a token).
    #[arg(long)]
    name: String,
    /// A rule on a key prefix: `PREFIX=read|write|deny` (an empty prefix is every key).
    #[arg(long = "rule", value_parser = parse_rule)]
    rules: Vec<(String, Access)>,
    /// A rule on a kie project's kvs: `PROJECT=read|write|deny`.
    #[arg(long = "project", value_parser = parse_rule)]
    projects: Vec<(String, Access)>,
    /// Access to membership and status.
    #[arg(long, value_parser = parse_access, default_value = "deny")]
    cluster: Access,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    List(ClientArgs),
    /// Create a token carrying these policies; prints its secret (shown once).
    Create(TokenArgs),
    /// Change a token's policies and description (its secret stays).
    Update {
        accessor: String,
        #[command(flatten)]
        token: TokenArgs,
    },
    Delete {
        accessor: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Policies by name, comma-separated (`management` for everything).
    #[arg(long, value_delimiter = ',')]
    policies: Vec<String>,
    #[arg(long, default_value = "")]
    description: String,
    #[command(flatten)]
    client: ClientArgs,
}

fn parse_access(text: &str) -> Result<Access, String> {
    match text {
        "read" => Ok(Access::Read),
        "write" => Ok(Access::Write),
        "deny" => Ok(Access::Deny),
        other => Err(format!("{other:?} is not read, write or deny")),
    }
}

fn parse_rule(text: &str) -> Result<(String, Access), String> {
    let (prefix, access) = text.rsplit_once('=').ok_or("a rule is PREFIX=read|write|deny")?;
    Ok((prefix.to_string(), parse_access(access)?))
}

pub async fn run(command: AclCommand) -> Outcome {
    let deleted = |answer: Result<(), ClientError>| answer.map(|()| serde_json::json!({ "deleted": true }));
    match command {
        AclCommand::Bootstrap(client) => match connect(&client).await {
            Ok(connected) => print(connected.acl_bootstrap(Route::Any).await),
            Err(outcome) => outcome,
        },
        AclCommand::Policy(PolicyCommand::List(client)) => match connect(&client).await {
            Ok(connected) => print(connected.acl_policies(Route::Any).await),
            Err(outcome) => outcome,
        },
        AclCommand::Policy(PolicyCommand::Create(args)) => put_policy(args, false).await,
        AclCommand::Policy(PolicyCommand::Update(args)) => put_policy(args, true).await,
        AclCommand::Policy(PolicyCommand::Delete { name, client }) => match connect(&client).await {
            Ok(connected) => print(deleted(connected.acl_delete_policy(Route::Any, &name).await)),
            Err(outcome) => outcome,
        },
        AclCommand::Token(TokenCommand::List(client)) => match connect(&client).await {
            Ok(connected) => print(connected.acl_tokens(Route::Any).await),
            Err(outcome) => outcome,
        },
        AclCommand::Token(TokenCommand::Create(args)) => match connect(&args.client).await {
            Ok(connected) => {
                let body = TokenRequestBody { policies: args.policies, description: args.description };
                print(connected.acl_create_token(Route::Any, &body).await)
            }
            Err(outcome) => outcome,
        },
        AclCommand::Token(TokenCommand::Update { accessor, token }) => match connect(&token.client).await {
            Ok(connected) => {
                let body = TokenRequestBody { policies: token.policies, description: token.description };
                print(connected.acl_update_token(Route::Any, &accessor, &body).await)
            }
            Err(outcome) => outcome,
        },
        AclCommand::Token(TokenCommand::Delete { accessor, client }) => match connect(&client).await {
            Ok(connected) => print(deleted(connected.acl_delete_token(Route::Any, &accessor).await)),
            Err(outcome) => outcome,
        },
    }
}

async fn put_policy(args: PolicyArgs, update: bool) -> Outcome {
    let connected = match connect(&args.client).await {
        Ok(connected) => connected,
        Err(outcome) => return outcome,
    };
    let prefixes =
        args.rules.into_iter().map(|(prefix, access)| RuleBody { prefix: Some(prefix), project: None, access });
    let projects =
        args.projects.into_iter().map(|(project, access)| RuleBody { prefix: None, project: Some(project), access });
    let policy = PolicyBody { name: args.name, rules: prefixes.chain(projects).collect(), cluster: args.cluster };
    print(connected.acl_put_policy(Route::Any, &policy, update).await.map(|answer| answer.value))
}

fn print<T: serde::Serialize>(answer: Result<T, ClientError>) -> Outcome {
    match answer {
        Ok(value) => {
            println!("{}", serde_json::to_string_pretty(&value).expect("ACL answers serialize"));
            Outcome::Done
        }
        Err(error) => failure(&error),
    }
}
