//! A model's prompt endpoints: templates already split into text and variables, and the
//! variables' types and constraints.
//!
//! The control plane parses each `AIModel` prompt once into an [`AiPrompt`]; the data plane
//! renders it per call. A template is held as [`TemplatePart`]s, so rendering is one pass
//! that puts values between pieces of text: a value is never read as a template, whatever
//! `{{…}}` it holds. Whether a value satisfies its variable is answered here, in
//! [`PromptVariable::check`], for both the defaults the control plane accepts and the values
//! callers send.

/// One prompt endpoint of a model: `POST /prompts/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct AiPrompt {
    /// A DNS label, unique within its model.
    pub name: String,
    /// The system turn; only variables that are not free text appear in it.
    pub system: Option<PromptTemplate>,
    /// The user turn.
    pub user: PromptTemplate,
    /// The variables callers pass, sorted by name.
    pub variables: Vec<PromptVariable>,
    /// Request fields sent with every call (`temperature`, `max_tokens`, …), as the text of a
    /// JSON object (the contract links no serde); validated, and never `model`, `messages`,
    /// `stream` or `stream_options`. Empty: none.
    pub params_json: String,
}

impl AiPrompt {
    /// The variable called `name`, with its index in [`AiPrompt::variables`].
    pub fn variable(&self, name: &str) -> Option<(usize, &PromptVariable)> {
        self.variables
            .binary_search_by(|v| v.name.as_str().cmp(name))
            .ok()
            .map(|i| (i, &self.variables[i]))
    }
}

/// A template as a sequence of text and variables.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptTemplate {
    pub parts: Vec<TemplatePart>,
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Sent as it is.
    Text(String),
    /// The value of the variable at this index of [`AiPrompt::variables`].
    Variable(usize),
}

/// A variable: its name, type, constraints and default.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptVariable {
    /// Letters, digits and `_`, starting with a letter.
    pub name: String,
    pub kind: VariableKind,
    /// A call without it is refused.
    pub required: bool,
    /// The value of a call that gives none; it satisfies [`PromptVariable::check`].
    pub default: Option<PromptValue>,
}

/// A variable's type and the constraints that type can have.
#[derive(Debug, Clone, PartialEq)]
pub enum VariableKind {
    /// Free text when `allowed` is empty.
    String {
        allowed: Vec<String>,
        /// In characters (Unicode scalar values), as JSON Schema counts them.
        max_length: Option<u64>,
    },
    Integer {
        minimum: Option<f64>,
        maximum: Option<f64>,
    },
    Number {
        minimum: Option<f64>,
        maximum: Option<f64>,
    },
    Boolean,
}

impl VariableKind {
    /// The JSON Schema type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            VariableKind::String { .. } => "string",
            VariableKind::Integer { .. } => "integer",
            VariableKind::Number { .. } => "number",
            VariableKind::Boolean => "boolean",
        }
    }

    /// Whether values of this kind are free text: a string any caller may write.
    pub fn is_free_text(&self) -> bool {
        matches!(self, VariableKind::String { allowed, .. } if allowed.is_empty())
    }
}

/// A variable's value.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptValue {
    String(String),
    Integer(i64),
    Number(f64),
    Boolean(bool),
}

/// Why a value does not satisfy its variable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueProblem {
    #[error("must be {}", article(expected))]
    WrongType { expected: &'static str },
    #[error("must be at most {max} characters long")]
    TooLong { max: u64 },
    #[error("must be one of {}", allowed.join(", "))]
    NotAllowed { allowed: Vec<String> },
    #[error("must be at least {minimum}")]
    BelowMinimum { minimum: f64 },
    #[error("must be at most {maximum}")]
    AboveMaximum { maximum: f64 },
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" => "an integer".into(),
        other => format!("a {other}"),
    }
}

impl PromptVariable {
    /// Whether `value` satisfies the variable's type and constraints.
    ///
    /// ```
    /// use weir_contract::{PromptValue, PromptVariable, ValueProblem, VariableKind};
    /// let words = PromptVariable {
    ///     name: "words".into(),
    ///     kind: VariableKind::Integer { minimum: Some(10.0), maximum: Some(500.0) },
    ///     required: false,
    ///     default: None,
    /// };
    /// assert_eq!(words.check(&PromptValue::Integer(100)), Ok(()));
    /// assert_eq!(
    ///     words.check(&PromptValue::Integer(501)),
    ///     Err(ValueProblem::AboveMaximum { maximum: 500.0 })
    /// );
    /// ```
    pub fn check(&self, value: &PromptValue) -> Result<(), ValueProblem> {
        let in_range = |number: f64, minimum: &Option<f64>, maximum: &Option<f64>| {
            if let Some(minimum) = *minimum
                && number < minimum
            {
                return Err(ValueProblem::BelowMinimum { minimum });
            }
            if let Some(maximum) = *maximum
                && number > maximum
            {
                return Err(ValueProblem::AboveMaximum { maximum });
            }
            Ok(())
        };
        match (&self.kind, value) {
            (
                VariableKind::String {
                    allowed,
                    max_length,
                },
                PromptValue::String(text),
            ) => {
                if !allowed.is_empty() && !allowed.contains(text) {
                    return Err(ValueProblem::NotAllowed {
                        allowed: allowed.clone(),
                    });
                }
                if let Some(max) = *max_length
                    && text.chars().count() as u64 > max
                {
                    return Err(ValueProblem::TooLong { max });
                }
                Ok(())
            }
            (VariableKind::Integer { minimum, maximum }, PromptValue::Integer(number)) => {
                in_range(*number as f64, minimum, maximum)
            }
            (VariableKind::Number { minimum, maximum }, PromptValue::Number(number)) => {
                in_range(*number, minimum, maximum)
            }
            // An integer is a number too.
            (VariableKind::Number { minimum, maximum }, PromptValue::Integer(number)) => {
                in_range(*number as f64, minimum, maximum)
            }
            (VariableKind::Boolean, PromptValue::Boolean(_)) => Ok(()),
            (kind, _) => Err(ValueProblem::WrongType {
                expected: kind.type_name(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variable(kind: VariableKind) -> PromptVariable {
        PromptVariable {
            name: "v".into(),
            kind,
            required: false,
            default: None,
        }
    }

    #[test]
    fn a_string_is_checked_against_its_enum_and_length_in_characters() {
        let audience = variable(VariableKind::String {
            allowed: vec!["engineers".into(), "executives".into()],
            max_length: None,
        });
        assert_eq!(
            audience.check(&PromptValue::String("engineers".into())),
            Ok(())
        );
        assert_eq!(
            audience
                .check(&PromptValue::String("everyone".into()))
                .unwrap_err()
                .to_string(),
            "must be one of engineers, executives"
        );
        let short = variable(VariableKind::String {
            allowed: vec![],
            max_length: Some(3),
        });
        assert_eq!(short.check(&PromptValue::String("été".into())), Ok(()));
        assert_eq!(
            short.check(&PromptValue::String("four".into())),
            Err(ValueProblem::TooLong { max: 3 })
        );
    }

    #[test]
    fn a_value_of_another_type_is_refused_and_an_integer_is_a_number() {
        let flag = variable(VariableKind::Boolean);
        assert_eq!(
            flag.check(&PromptValue::String("true".into()))
                .unwrap_err()
                .to_string(),
            "must be a boolean"
        );
        let count = variable(VariableKind::Integer {
            minimum: None,
            maximum: None,
        });
        assert_eq!(
            count
                .check(&PromptValue::Number(1.5))
                .unwrap_err()
                .to_string(),
            "must be an integer"
        );
        let ratio = variable(VariableKind::Number {
            minimum: Some(0.0),
            maximum: Some(1.0),
        });
        assert_eq!(ratio.check(&PromptValue::Integer(1)), Ok(()));
        assert_eq!(
            ratio.check(&PromptValue::Number(-0.5)),
            Err(ValueProblem::BelowMinimum { minimum: 0.0 })
        );
    }

    #[test]
    fn variables_are_found_by_name() {
        let prompt = AiPrompt {
            name: "p".into(),
            system: None,
            user: PromptTemplate::default(),
            variables: ["a", "b", "c"]
                .map(|name| PromptVariable {
                    name: name.into(),
                    ..variable(VariableKind::Boolean)
                })
                .into(),
            params_json: String::new(),
        };
        assert_eq!(prompt.variable("b").map(|(i, _)| i), Some(1));
        assert!(prompt.variable("d").is_none());
    }
}
