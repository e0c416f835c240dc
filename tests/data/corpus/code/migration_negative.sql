CREATE TABLE customers (id serial PRIMARY KEY, email text NOT NULL);
INSERT INTO customers VALUES (0, 'seed0@shop.internal');
INSERT INTO customers VALUES (1, 'seed1@shop.internal');
INSERT INTO customers VALUES (2, 'seed2@shop.internal');
INSERT INTO customers VALUES (3, 'seed3@shop.internal');
INSERT INTO customers VALUES (4, 'seed4@shop.internal');
