-- Act as the writer role for the rest of this transaction (stores.writer_role), so every
-- object a publish creates is owned by it, whichever member logged in.
SELECT set_config('role', :role, true);
