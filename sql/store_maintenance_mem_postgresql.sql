-- PostgreSQL: memory for building the snapshot table's primary key (this transaction only).
SELECT set_config('maintenance_work_mem', :memory, true);
