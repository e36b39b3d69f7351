//! The store answers a call about many jobs with one answer per job, in
//! order; an answer for fewer (or more) jobs is an error, never a job left
//! unsettled.

use sluice_store::StoreError;

/// A store's answers to a call for `asked` jobs: one each, or an error
/// (so that no job is left unsettled by a short answer).
pub(crate) fn answered_each<T>(
    what: &str,
    asked: usize,
    answers: Result<Vec<T>, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let answers = answers?;
    if answers.len() == asked {
        Ok(answers)
    } else {
        Err(StoreError::Corrupt(format!(
            "{what} answered for {} of {asked} jobs",
            answers.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_long_answer_from_the_store_is_an_error_not_a_lost_job() {
        assert_eq!(
            answered_each("start", 2, Ok(vec![1, 2])).unwrap(),
            vec![1, 2]
        );
        for answers in [vec![1], vec![1, 2, 3]] {
            let err = answered_each("start", 2, Ok(answers)).unwrap_err();
            assert!(err.to_string().contains("of 2 jobs"), "{err}");
        }
        let down = StoreError::Unavailable("down".into());
        assert!(answered_each::<u8>("finish", 1, Err(down)).is_err());
    }
}
