//! Pieces of a stack's configuration that tests share, each written once:
//! a model's price (the mock's flag that bills it, Sluice's `[[prices]]`
//! table that says so) and a provider served by the backup mock.

/// What a model costs, in micro-dollars per million tokens.
#[derive(Clone, Copy)]
pub struct Price {
    pub model: &'static str,
    pub input: u64,
    pub cached_input: u64,
    pub output: u64,
}

/// `mock-small` at odd prices, so that rounding matters.
pub const ODD_PRICE: Price = Price {
    model: "mock-small",
    input: 1_500_001,
    cached_input: 150_001,
    output: 6_000_001,
};

impl Price {
    /// The mock's flags that bill the model at this price.
    pub fn mock_flags(&self) -> [String; 2] {
        let Price {
            model,
            input,
            cached_input,
            output,
        } = self;
        let price = format!("{model}={input}:{cached_input}:{output}");
        ["--price".into(), price]
    }

    /// Sluice's `[[prices]]` table: `provider` bills the model so.
    pub fn toml(&self, provider: &str) -> String {
        format!(
            "\n[[prices]]\nprovider = \"{provider}\"\nmodel = \"{}\"\ninput = {}\ncached_input = {}\noutput = {}\n",
            self.model, self.input, self.cached_input, self.output
        )
    }
}

/// The provider `name` (of `kind`, `openai` or `anthropic`) served by the
/// stack's backup mock, and the model `model` routed to `providers` in
/// order (with `extra` lines in its `[[models]]` table).
pub fn backup_route(
    name: &str,
    kind: &str,
    model: &str,
    providers: &[&str],
    extra: &str,
) -> String {
    let providers: Vec<String> = providers.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "\n[[providers]]\nname = \"{name}\"\nkind = \"{kind}\"\nbase_url = \"{{backup_url}}/v1\"\n\n\
         [[models]]\nname = \"{model}\"\nproviders = [{}]\n{extra}\n",
        providers.join(", ")
    )
}
