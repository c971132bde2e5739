"""The parametric face model (book Ch. 7.3): identity modelled explicitly in shape and texture."""
