//! [`Overrides`]: the flags given for settings that a file can also hold,
//! so that the flags can be laid over the file's values.
//!
//! Clap fills every field of a settings struct, given or not, from the
//! defaults its flags declare; a file's value must win over a default but
//! lose to a flag. So this keeps only the flags that were given (on the
//! command line or through their environment variable) and applies them
//! with the struct's own [`FromArgMatches::update_from_arg_matches`],
//! which leaves the fields of absent flags alone.

use std::marker::PhantomData;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};

/// The flags of `T` that were given. `#[command(flatten)]` it where `T`'s
/// flags belong.
#[derive(Debug, Clone)]
pub struct Overrides<T> {
    given: ArgMatches,
    settings: PhantomData<fn() -> T>,
}

impl<T: FromArgMatches> Overrides<T> {
    /// `base` (the defaults, or a file's settings) with the given flags
    /// laid over it.
    pub fn apply(&self, mut base: T) -> Result<T, clap::Error> {
        base.update_from_arg_matches(&self.given)?;
        Ok(base)
    }
}

impl<T: Args> Args for Overrides<T> {
    fn augment_args(command: Command) -> Command {
        T::augment_args(command)
    }

    fn augment_args_for_update(command: Command) -> Command {
        T::augment_args_for_update(command)
    }
}

impl<T> FromArgMatches for Overrides<T> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut given = matches.clone();
        for id in matches.ids() {
            let source = matches.value_source(id.as_str());
            if !matches!(
                source,
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                given
                    .try_clear_id(id.as_str())
                    .map_err(|err| clap::Error::raw(clap::error::ErrorKind::InvalidValue, err))?;
            }
        }
        Ok(Self {
            given,
            settings: PhantomData,
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}
