--
-- PostgreSQL database dump
--

\restrict MACwRo9hi0lg2UZd6KekdfH0JTi4zOVISDjsTLBwsluBZGFlgu4CuNtRu8v7QgY

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: customers; Type: TABLE; Schema: public; Owner: postgres
--

CREATE TABLE public.customers (
    id integer NOT NULL,
    name text NOT NULL,
    email text,
    phone text,
    iban text,
    ahv text,
    card text
);


ALTER TABLE public.customers OWNER TO postgres;

--
-- Data for Name: customers; Type: TABLE DATA; Schema: public; Owner: postgres
--

INSERT INTO public.customers VALUES (1, 'Luca Mueller', 'luca.mueller0@bluewin.ch', '+41 79 717 90 83', 'CH1100863794026542351', '756.1615.5940.78', '4433218196001330');
INSERT INTO public.customers VALUES (2, 'Laura Meier', 'laura.meier1@bluewin.ch', '+41 79 303 64 75', 'CH8400255341928327648', '756.3503.0564.15', '4618495931034134');
INSERT INTO public.customers VALUES (3, 'Noah Huber', 'noah.huber2@bluewin.ch', '+41 79 608 53 28', 'CH4100710122691669784', '756.8018.4514.65', '4376724238849692');
INSERT INTO public.customers VALUES (4, 'Sofia Fischer', 'sofia.fischer3@bluewin.ch', '+41 79 997 80 95', 'CH4900701543039117182', '756.2782.4896.31', '4048281489325284');
INSERT INTO public.customers VALUES (5, 'Laura Keller', 'laura.keller4@bluewin.ch', '+41 79 435 93 01', 'CH4500031051834738299', '756.7376.3116.57', '4465787133150989');
INSERT INTO public.customers VALUES (6, 'Lea Steiner', 'lea.steiner5@bluewin.ch', '+41 79 387 47 31', 'CH1200781080132677360', '756.2606.4746.83', '4701065133387263');
INSERT INTO public.customers VALUES (7, 'Leon Schmid', 'leon.schmid6@bluewin.ch', '+41 79 361 08 12', 'CH9400191361939909169', '756.9854.3534.63', '4343098050097882');
INSERT INTO public.customers VALUES (8, 'Sofia Weber', 'sofia.weber7@bluewin.ch', '+41 79 557 13 54', 'CH6400278498084124118', '756.2449.3534.80', '4751079911838420');
INSERT INTO public.customers VALUES (9, 'Leon Weber', 'leon.weber8@bluewin.ch', '+41 79 209 11 28', 'CH7200059826204505331', '756.5869.2322.67', '4016400524278682');
INSERT INTO public.customers VALUES (10, 'Anna Schmid', 'anna.schmid9@bluewin.ch', '+41 79 433 30 36', 'CH6600541458685014294', '756.0196.5569.87', '4563421607337549');
INSERT INTO public.customers VALUES (11, 'Luca Steiner', 'luca.steiner10@bluewin.ch', '+41 79 521 14 84', 'CH1300656482366299468', '756.0443.6995.73', '4934060883561596');
INSERT INTO public.customers VALUES (12, 'Leon Fischer', 'leon.fischer11@bluewin.ch', '+41 79 350 00 37', 'CH5000917693676320163', '756.2870.8317.24', '4387214895134338');
INSERT INTO public.customers VALUES (13, 'Leon Huber', 'leon.huber12@bluewin.ch', '+41 79 841 34 71', 'CH5500434558122362316', '756.6587.6036.67', '4798687277434876');
INSERT INTO public.customers VALUES (14, 'Jonas Mueller', 'jonas.mueller13@bluewin.ch', '+41 79 479 67 06', 'CH9300562729806990162', '756.7204.6537.51', '4967054668893738');
INSERT INTO public.customers VALUES (15, 'Elias Steiner', 'elias.steiner14@bluewin.ch', '+41 79 404 09 23', 'CH5800271937452991241', '756.9049.6631.93', '4464170805310036');
INSERT INTO public.customers VALUES (16, 'Noah Meier', 'noah.meier15@bluewin.ch', '+41 79 701 16 57', 'CH9600262849877694531', '756.4737.9965.08', '4491905865185068');
INSERT INTO public.customers VALUES (17, 'Leon Huber', 'leon.huber16@bluewin.ch', '+41 79 447 67 83', 'CH9700777014363495788', '756.5685.5744.42', '4273545494808310');
INSERT INTO public.customers VALUES (18, 'Noah Meier', 'noah.meier17@bluewin.ch', '+41 79 398 43 52', 'CH2200408240084271094', '756.7775.2047.10', '4351823374989418');
INSERT INTO public.customers VALUES (19, 'Luca Steiner', 'luca.steiner18@bluewin.ch', '+41 79 810 93 86', 'CH7200774964990913341', '756.2328.1206.77', '4719022941318691');
INSERT INTO public.customers VALUES (20, 'Jonas Fischer', 'jonas.fischer19@bluewin.ch', '+41 79 430 24 21', 'CH0900024994717464887', '756.7190.6594.09', '4403447134936184');
INSERT INTO public.customers VALUES (21, 'Luca Keller', 'luca.keller20@bluewin.ch', '+41 79 850 71 75', 'CH5900655125674680715', '756.4516.8087.63', '4990490278742967');
INSERT INTO public.customers VALUES (22, 'Anna Keller', 'anna.keller21@bluewin.ch', '+41 79 229 93 24', 'CH9300808613171274846', '756.7737.8263.94', '4859770348247711');
INSERT INTO public.customers VALUES (23, 'Laura Schmid', 'laura.schmid22@bluewin.ch', '+41 79 751 75 58', 'CH9100867533963605766', '756.2702.8951.77', '4146584044997278');
INSERT INTO public.customers VALUES (24, 'Luca Fischer', 'luca.fischer23@bluewin.ch', '+41 79 524 78 09', 'CH4600134316117240050', '756.4556.2386.98', '4026217459615862');
INSERT INTO public.customers VALUES (25, 'Sofia Schmid', 'sofia.schmid24@bluewin.ch', '+41 79 882 07 48', 'CH8800217594647436713', '756.6959.4406.47', '4219693792374747');
INSERT INTO public.customers VALUES (26, 'Anna Mueller', 'anna.mueller25@bluewin.ch', '+41 79 651 09 52', 'CH7700145623285884247', '756.4517.1236.81', '4974395339421040');
INSERT INTO public.customers VALUES (27, 'Elias Meier', 'elias.meier26@bluewin.ch', '+41 79 225 98 59', 'CH0500317461200471138', '756.2675.8692.67', '4604817549651379');
INSERT INTO public.customers VALUES (28, 'Luca Fischer', 'luca.fischer27@bluewin.ch', '+41 79 262 64 31', 'CH5400713900532931839', '756.3352.9042.26', '4964053773515858');
INSERT INTO public.customers VALUES (29, 'Laura Weber', 'laura.weber28@bluewin.ch', '+41 79 959 68 11', 'CH2300775891783908470', '756.0766.1771.16', '4210205395024022');
INSERT INTO public.customers VALUES (30, 'Elias Schmid', 'elias.schmid29@bluewin.ch', '+41 79 640 11 83', 'CH4900673657661565452', '756.7111.1615.23', '4124998569847898');
INSERT INTO public.customers VALUES (31, 'Laura Mueller', 'laura.mueller30@bluewin.ch', '+41 79 791 83 27', 'CH1400315851493689980', '756.9402.4455.03', '4988516560494513');
INSERT INTO public.customers VALUES (32, 'Sofia Schmid', 'sofia.schmid31@bluewin.ch', '+41 79 519 59 91', 'CH4800022901476797643', '756.8156.1497.81', '4961201836675259');
INSERT INTO public.customers VALUES (33, 'Mia Mueller', 'mia.mueller32@bluewin.ch', '+41 79 709 62 26', 'CH5200838851606071596', '756.9664.1605.27', '4369003432445105');
INSERT INTO public.customers VALUES (34, 'Jonas Fischer', 'jonas.fischer33@bluewin.ch', '+41 79 541 21 81', 'CH4900883552312432921', '756.2779.9799.54', '4516136968164534');
INSERT INTO public.customers VALUES (35, 'Elias Schmid', 'elias.schmid34@bluewin.ch', '+41 79 238 05 41', 'CH2700199867980793597', '756.8207.1518.24', '4717744905814777');
INSERT INTO public.customers VALUES (36, 'Anna Keller', 'anna.keller35@bluewin.ch', '+41 79 846 51 51', 'CH7200864492519254629', '756.1486.5281.65', '4778892554665903');
INSERT INTO public.customers VALUES (37, 'Laura Huber', 'laura.huber36@bluewin.ch', '+41 79 719 88 05', 'CH9500929622292706537', '756.9473.8347.32', '4054235733221419');
INSERT INTO public.customers VALUES (38, 'Elias Fischer', 'elias.fischer37@bluewin.ch', '+41 79 767 18 14', 'CH2600124782613750606', '756.8536.1530.56', '4746886239240750');
INSERT INTO public.customers VALUES (39, 'Luca Huber', 'luca.huber38@bluewin.ch', '+41 79 353 89 86', 'CH4000143410369711798', '756.0893.2460.99', '4220472779010435');
INSERT INTO public.customers VALUES (40, 'Elias Keller', 'elias.keller39@bluewin.ch', '+41 79 681 06 54', 'CH4800051531952058527', '756.7221.7043.06', '4962185188888066');
INSERT INTO public.customers VALUES (41, 'Noah Mueller', 'noah.mueller40@bluewin.ch', '+41 79 327 56 67', 'CH8500652775841616928', '756.4511.5447.96', '4548687403450542');
INSERT INTO public.customers VALUES (42, 'Lea Schmid', 'lea.schmid41@bluewin.ch', '+41 79 231 29 70', 'CH1100213556909275571', '756.9285.6543.13', '4757059640165828');
INSERT INTO public.customers VALUES (43, 'Anna Schmid', 'anna.schmid42@bluewin.ch', '+41 79 338 17 27', 'CH5300155188442258313', '756.2370.5895.76', '4786814473947311');
INSERT INTO public.customers VALUES (44, 'Laura Schmid', 'laura.schmid43@bluewin.ch', '+41 79 660 78 52', 'CH0800892268018242253', '756.5841.4384.27', '4911467866912513');
INSERT INTO public.customers VALUES (45, 'Mia Meier', 'mia.meier44@bluewin.ch', '+41 79 856 94 39', 'CH5600690784473647102', '756.7677.3592.59', '4829922995900103');
INSERT INTO public.customers VALUES (46, 'Elias Huber', 'elias.huber45@bluewin.ch', '+41 79 299 04 69', 'CH6600632595327877470', '756.1687.3395.08', '4625881537147324');
INSERT INTO public.customers VALUES (47, 'Anna Weber', 'anna.weber46@bluewin.ch', '+41 79 610 09 83', 'CH9600584168784991216', '756.5585.2398.61', '4797480162456506');
INSERT INTO public.customers VALUES (48, 'Laura Mueller', 'laura.mueller47@bluewin.ch', '+41 79 366 69 49', 'CH4900588879470551694', '756.0974.9930.96', '4002578729825955');
INSERT INTO public.customers VALUES (49, 'Leon Schmid', 'leon.schmid48@bluewin.ch', '+41 79 622 36 89', 'CH5100702838578652785', '756.8549.7334.81', '4896230913075620');
INSERT INTO public.customers VALUES (50, 'Mia Keller', 'mia.keller49@bluewin.ch', '+41 79 604 52 40', 'CH2100415747338484219', '756.9330.8330.14', '4443757584419867');
INSERT INTO public.customers VALUES (51, 'Lea Huber', 'lea.huber50@bluewin.ch', '+41 79 987 19 38', 'CH4900026206724004991', '756.5478.8728.78', '4712082677345406');
INSERT INTO public.customers VALUES (52, 'Mia Keller', 'mia.keller51@bluewin.ch', '+41 79 637 85 16', 'CH4700122753046374549', '756.9045.3017.47', '4152742054932962');
INSERT INTO public.customers VALUES (53, 'Sofia Steiner', 'sofia.steiner52@bluewin.ch', '+41 79 625 87 83', 'CH3700391878519108839', '756.8225.8713.91', '4841459332727950');
INSERT INTO public.customers VALUES (54, 'Leon Meier', 'leon.meier53@bluewin.ch', '+41 79 605 40 39', 'CH9800106518017046226', '756.5676.6182.54', '4870728679087408');
INSERT INTO public.customers VALUES (55, 'Luca Schmid', 'luca.schmid54@bluewin.ch', '+41 79 453 75 24', 'CH7000310690331190790', '756.3067.3830.26', '4868230047868639');
INSERT INTO public.customers VALUES (56, 'Laura Weber', 'laura.weber55@bluewin.ch', '+41 79 262 89 26', 'CH7300870568566246287', '756.3342.7086.67', '4395995342836448');
INSERT INTO public.customers VALUES (57, 'Laura Schmid', 'laura.schmid56@bluewin.ch', '+41 79 889 99 01', 'CH0800398373540331739', '756.3638.5467.82', '4634351751830467');
INSERT INTO public.customers VALUES (58, 'Elias Weber', 'elias.weber57@bluewin.ch', '+41 79 426 20 48', 'CH8200996423536937854', '756.7772.5228.79', '4458771753556096');
INSERT INTO public.customers VALUES (59, 'Sofia Mueller', 'sofia.mueller58@bluewin.ch', '+41 79 582 09 97', 'CH3500700886008484086', '756.2118.2339.83', '4801006231203878');
INSERT INTO public.customers VALUES (60, 'Mia Huber', 'mia.huber59@bluewin.ch', '+41 79 588 68 70', 'CH3200021765918033974', '756.0148.9025.03', '4461567933410161');


--
-- Name: customers customers_pkey; Type: CONSTRAINT; Schema: public; Owner: postgres
--

ALTER TABLE ONLY public.customers
    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);


--
-- PostgreSQL database dump complete
--

\unrestrict MACwRo9hi0lg2UZd6KekdfH0JTi4zOVISDjsTLBwsluBZGFlgu4CuNtRu8v7QgY

