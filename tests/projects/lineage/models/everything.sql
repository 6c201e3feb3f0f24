MODEL (
  name crm.everything,
  kind VIEW
);

/* Reads a table SQLMesh knows no columns of: the star cannot be expanded. */
SELECT * FROM billing.undeclared
